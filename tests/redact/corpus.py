#!/usr/bin/env python3
"""Synthetic, labelled corpus for measuring Strongroom's PII and secret redactor.

Python 3.11 standard library only.

Usage: python3 tests/redact/corpus.py [--seed N] [--records N] > corpus.jsonl

Writes NDJSON to stdout, one record per line (defaults: seed 7, 4000 records). The same seed and
count always give byte-identical output. Counts per kind and per shape go to stderr.

  {"id": "r00001", "text": "...",
   "spans": [{"start": S, "end": E, "kind": K}, ...],
   "negatives": [{"start": S, "end": E, "shape": SHAPE}, ...]}

Offsets are indices into the Python str (code points), end exclusive, sorted, never overlapping.
The text is built by appending pieces, each plain or labelled, so offsets are recorded while the
text grows; nothing is found by searching the finished text.

spans      sensitive values the redactor must find. Conventions (what the detector is written to):
           EMAIL the bare address (no <>, quotes or mailto:); PHONE from "+", "(" or the first
           digit to the last digit; CREDIT_CARD first to last digit; IBAN with its inner spaces;
           IP_ADDRESS without ":port", "[]" or "/len"; US_SSN and UK_NINO the number;
           API_KEY the token, never its name, never quotes; PRIVATE_KEY from the first "-" of
           BEGIN to the last "-" of END; URL_PASSWORD only the password of a URL's userinfo;
           PERSON first name(s) and surname with particles, no title.
negatives  hard negatives: strings shaped like a sensitive value that must not be flagged. Ordinary
           text (prices, postcodes, room numbers, log timestamps) is not listed at all; any detector
           span on it is a false positive too.

Each record holds 0-4 sensitive values and 0-3 hard negatives (about 15 % hold neither), in an
English, German, French, Dutch or Spanish passage: prose, or an e-mail signature, a support
ticket, a log excerpt, a .env file, YAML, JSON or a CSV row.
"""

import argparse
import base64
import datetime
import ipaddress
import json
import random
import re
import string
import sys
import unicodedata
import uuid
from collections import Counter, namedtuple

KINDS = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "UK_NINO", "API_KEY",
         "PRIVATE_KEY", "URL_PASSWORD", "PERSON")
SHAPES = ("ORDER_NUMBER", "TRACKING_NUMBER", "TICKET_ID", "INVOICE_NUMBER", "PAYMENT_REFERENCE",
          "UUID", "HASH", "TIMESTAMP", "VERSION", "LUHN_INVALID_CARD", "BAD_IBAN", "PLAIN_URL",
          "PLACEHOLDER", "LOW_ENTROPY_SECRET")

# How often each kind and shape is drawn for a record.
KIND_WEIGHTS = {"PERSON": 14, "EMAIL": 13, "PHONE": 12, "API_KEY": 13, "IP_ADDRESS": 10,
                "IBAN": 9, "CREDIT_CARD": 8, "URL_PASSWORD": 8, "US_SSN": 5, "UK_NINO": 5,
                "PRIVATE_KEY": 4}
SHAPE_WEIGHTS = {shape: 10 for shape in SHAPES}

LANGS = ("en", "de", "fr", "nl", "es")
LANG_WEIGHTS = (30, 20, 17, 17, 16)

# ---------------------------------------------------------------------------------------------
# Pieces of text: (text, kind or None, shape or None)


def plain(text):
    return (text, None, None)


def pii(text, kind):
    return (text, kind, None)


def neg(text, shape):
    return (text, None, shape)


def seg_text(segs):
    return "".join(s[0] for s in segs)


# ---------------------------------------------------------------------------------------------
# Random helpers

UPPER = string.ascii_uppercase
LOWER = string.ascii_lowercase
DIGITS = string.digits
ALNUM = UPPER + LOWER + DIGITS
URLSAFE = ALNUM + "-_"
BASE64 = ALNUM + "+/"
BASE32 = UPPER + "234567"
HEX = "0123456789abcdef"


def rand_str(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def rand_digits(rng, n, first_nonzero=False):
    s = rand_str(rng, DIGITS, n)
    if first_nonzero and s[0] == "0":
        s = str(rng.randint(1, 9)) + s[1:]
    return s


def mixed(s):
    """Has a digit, an upper and a lower case letter."""
    return (any(c.isdigit() for c in s) and any(c.isupper() for c in s)
            and any(c.islower() for c in s))


def mixed_str(rng, alphabet, n):
    while True:
        s = rand_str(rng, alphabet, n)
        if mixed(s):
            return s


def weighted(rng, table):
    """table: {value: weight}"""
    return rng.choices(list(table), weights=list(table.values()))[0]


def rand_datetime(rng):
    start = datetime.datetime(2019, 1, 1, tzinfo=datetime.timezone.utc)
    return start + datetime.timedelta(seconds=rng.randrange(7 * 365 * 86400))


# ---------------------------------------------------------------------------------------------
# Ordinary numbers (never labelled): prices, quantities, percentages, rooms, postcodes

PLACES = {
    "en": ["London SW1A 1AA", "London EC1A 1BB", "Manchester M1 1AE", "Bristol BS1 4DJ",
           "Leeds LS1 4AP", "Edinburgh EH1 1YZ"],
    "de": ["10115 Berlin", "80331 München", "20095 Hamburg", "50667 Köln",
           "60311 Frankfurt am Main", "70173 Stuttgart", "04109 Leipzig"],
    "fr": ["75008 Paris", "69002 Lyon", "13001 Marseille", "31000 Toulouse", "33000 Bordeaux",
           "44000 Nantes"],
    "nl": ["1012 AB Amsterdam", "3011 AD Rotterdam", "3511 LX Utrecht", "2511 CV Den Haag",
           "5611 AZ Eindhoven"],
    "es": ["28013 Madrid", "08002 Barcelona", "41004 Sevilla", "46002 Valencia", "48001 Bilbao"],
}


def group_thousands(n, sep):
    s = str(n)
    parts = []
    while len(s) > 3:
        parts.insert(0, s[-3:])
        s = s[:-3]
    parts.insert(0, s)
    return sep.join(parts)


def price(rng, lang):
    units = rng.choice((rng.randint(1, 99), rng.randint(100, 999), rng.randint(1000, 25000)))
    cents = rng.choice((0, 0, 50, 90, 99, rng.randint(1, 99)))
    if lang == "en":
        return f"{rng.choice('$£€')}{group_thousands(units, ',')}.{cents:02d}"
    amount = f"{group_thousands(units, ' ' if lang == 'fr' else '.')},{cents:02d}"
    return rng.choice((f"{amount} €", f"€ {amount}", f"{amount} EUR"))


def percent(rng, lang):
    whole, tenth = rng.randint(1, 60), rng.randint(1, 9)
    if lang == "en":
        return rng.choice((f"{whole}%", f"{whole}.{tenth}%"))
    return rng.choice((f"{whole} %", f"{whole},{tenth} %", f"{whole}%"))


def room(rng, lang):
    return rng.choice((f"{rng.randint(1, 6)}.{rng.randint(1, 40):02d}", f"B{rng.randint(101, 450)}",
                       str(rng.randint(3, 120))))


def ordinary(rng, lang, field):
    if field == "price":
        return price(rng, lang)
    if field == "pct":
        return percent(rng, lang)
    if field == "room":
        return room(rng, lang)
    if field == "place":
        return rng.choice(PLACES[lang])
    if field == "qty":
        return str(rng.choice((rng.randint(2, 40), rng.randint(40, 2500))))
    if field == "n":
        return str(rng.randint(2, 5))
    if field == "n2":
        return str(rng.randint(6, 14))
    if field == "exp":
        return f"{rng.randint(1, 12):02d}/{rng.randint(25, 31)}"
    if field == "mb":
        return str(rng.choice((5, 10, 20, 25, 50, 100, 250, 500)))
    raise KeyError(field)


FIELD = re.compile(r"\{(\w+)\}")


def expand(rng, lang, text):
    return FIELD.sub(lambda m: ordinary(rng, lang, m.group(1)), text)


def fill(rng, lang, template, value):
    """A template has one "{}" slot for the value's pieces and may name ordinary fields."""
    before, after = template.split("{}")
    return [plain(expand(rng, lang, before)), *value, plain(expand(rng, lang, after))]


# ---------------------------------------------------------------------------------------------
# PERSON

# origin: (male first names, female first names, surnames); written for this corpus
NAMES = {
    "english": (["Oliver", "George", "Harry", "Jack", "Thomas", "William", "Daniel", "Callum"],
                ["Charlotte", "Emily", "Sophie", "Grace", "Olivia", "Hannah", "Eleanor", "Imogen"],
                ["Thompson", "Whitaker", "Hughes", "Fletcher", "Barnes", "Holloway", "Pritchard",
                 "Cartwright", "Ellison", "Marsh", "Bennett", "Ashworth", "Greenhalgh"]),
    "german": (["Lukas", "Jonas", "Maximilian", "Felix", "Tobias", "Matthias", "Jürgen",
                "Karl-Heinz"],
               ["Anna", "Lea", "Johanna", "Katharina", "Sabine", "Ursula", "Mareike", "Lena",
                "Anna-Lena"],
               ["Müller", "Becker", "Schröder", "Weiß", "Krüger", "Hoffmann", "Schäfer", "Großmann",
                "Köhler", "Neumann", "Zimmermann", "Vogt", "von Bülow", "Brandstätter", "Heßler"]),
    "french": (["Jean-Pierre", "Étienne", "Mathieu", "Olivier", "Théo", "François", "Rémi", "Hugo"],
               ["Élodie", "Camille", "Manon", "Chloé", "Margaux", "Hélène", "Inès", "Océane"],
               ["Dubois", "Lefèvre", "Moreau", "Girard", "Rousseau", "Fournier", "Lemaire",
                "Chevalier", "Bérenger", "Garnier", "du Pont", "de la Fontaine", "Le Goff",
                "Lacroix", "Mercier", "le Bris"]),
    "dutch": (["Jan", "Pieter", "Sander", "Joost", "Bram", "Thijs", "Wouter", "Maarten"],
              ["Sanne", "Femke", "Lieke", "Anouk", "Marloes", "Noor", "Eline", "Ilse"],
              ["de Vries", "van den Berg", "Jansen", "Bakker", "van Dijk", "Visser", "Smit",
               "Meijer", "de Jong", "van den Bosch", "Kuipers", "Mulder", "Dekker", "van Leeuwen",
               "van der Linden"]),
    "spanish": (["Alejandro", "Javier", "Sergio", "Álvaro", "Diego", "Iñigo", "Raúl", "José Luis"],
                ["Lucía", "María José", "Carmen", "Nuria", "Paula", "Begoña", "Marta", "Ainhoa"],
                ["García", "Fernández", "López", "Martínez", "Sánchez", "Gómez", "Núñez", "Ibáñez",
                 "Castillo", "Ortega", "de la Fuente", "Muñoz", "Serrano", "Peña"]),
    "italian": (["Giuseppe", "Lorenzo", "Matteo", "Alessandro", "Davide", "Riccardo", "Niccolò"],
                ["Giulia", "Francesca", "Chiara", "Federica", "Alessia", "Martina", "Ilaria"],
                ["Rossi", "Bianchi", "Esposito", "Ricci", "Romano", "Colombo", "Marino", "Greco",
                 "Bruno", "Gallo", "Conti", "di Stefano", "da Ponte", "De Luca"]),
    "polish": (["Paweł", "Łukasz", "Krzysztof", "Tomasz", "Mateusz", "Wojciech", "Grzegorz"],
               ["Agnieszka", "Małgorzata", "Katarzyna", "Zofia", "Joanna", "Magdalena", "Ewa"],
               ["Nowak", "Wiśniewski", "Wójcik", "Kamiński", "Lewandowski", "Zieliński",
                "Szymański", "Woźniak", "Dąbrowski", "Kozłowski", "Mazur", "Krawczyk", "Żak",
                "Jabłoński"]),
    "turkish": (["Mehmet", "Emre", "Burak", "Oğuz", "Kerem", "Serkan", "Murat"],
                ["Ayşe", "Elif", "Zeynep", "Gülşen", "Merve", "Esra", "Büşra"],
                ["Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Öztürk", "Aydın",
                 "Arslan", "Doğan", "Kılıç", "Koç", "Güneş", "Aksoy"]),
    "indian": (["Arjun", "Rahul", "Vikram", "Sanjay", "Aditya", "Rohan", "Karthik"],
               ["Priya", "Ananya", "Deepika", "Kavya", "Meera", "Lakshmi", "Shreya"],
               ["Sharma", "Patel", "Iyer", "Reddy", "Nair", "Gupta", "Chatterjee", "Banerjee",
                "Menon", "Krishnan", "Deshpande", "Rao", "Kulkarni", "Joshi"]),
    "chinese": (["Wei", "Jun", "Hao", "Zhiwei", "Jianguo", "Yichen", "Haoran"],
                ["Xiaoling", "Mei", "Yuting", "Jing", "Xinyi", "Lihua", "Fang"],
                ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu",
                 "Sun", "Zhu", "Guo"]),
    "japanese": (["Haruto", "Takeshi", "Kenji", "Ren", "Daiki", "Yusuke", "Hiroshi"],
                 ["Yui", "Aiko", "Sakura", "Haruka", "Misaki", "Emi", "Natsumi"],
                 ["Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto",
                  "Nakamura", "Kobayashi", "Kato", "Yoshida", "Yamada", "Sasaki", "Matsumoto"]),
    "nigerian": (["Chukwuemeka", "Oluwaseun", "Adebayo", "Emeka", "Tunde", "Ifeanyi", "Babajide"],
                 ["Ngozi", "Chiamaka", "Folake", "Adaeze", "Yetunde", "Funmilayo", "Amaka"],
                 ["Okafor", "Adeyemi", "Okonkwo", "Balogun", "Nwosu", "Eze", "Olawale", "Ogunleye",
                  "Chukwu", "Abiodun", "Obi", "Afolabi", "Onyekachi", "Adewale"]),
    "arabic": (["Omar", "Youssef", "Karim", "Tariq", "Hassan", "Khalid", "Samir"],
               ["Fatima", "Layla", "Amira", "Nour", "Yasmin", "Rania", "Salma"],
               ["Haddad", "Al-Masri", "El-Amin", "Khoury", "Mansour", "Nasser", "Saleh", "Farouk",
                "Abboud", "Al-Rashid", "Hamdan", "Qasim", "Darwish", "Bitar"]),
}
HOME_ORIGIN = {"en": "english", "de": "german", "fr": "french", "nl": "dutch", "es": "spanish"}

Person = namedtuple("Person", "first last gender full")


def person(rng, lang):
    origin = HOME_ORIGIN[lang] if rng.random() < 0.45 else rng.choice(list(NAMES))
    males, females, surnames = NAMES[origin]
    gender = rng.choice("mf")
    pool = males if gender == "m" else females
    first = rng.choice(pool)
    if rng.random() < 0.1 and "-" not in first and " " not in first:
        second = rng.choice(pool)
        if second != first and "-" not in second and " " not in second:
            first = f"{first} {second}"
    last = rng.choice(surnames)
    if origin == "polish" and gender == "f" and last.endswith("ki"):
        last = last[:-1] + "a"
    if origin == "spanish" and rng.random() < 0.5:
        other = rng.choice(surnames)
        if other != last and " " not in other:
            last = f"{last} {other}"
    return Person(first, last, gender, f"{first} {last}")


# Title markers in person templates: with a title they become a title for the person's gender,
# without one they become the plain replacement (an empty one takes its following space along).
TITLES = {
    "en": {"t": {"m": ["Mr.", "Dr."], "f": ["Mrs.", "Ms.", "Dr."]}},
    "de": {"t": {"m": ["Herr", "Dr.", "Herr Dr."], "f": ["Frau", "Dr.", "Frau Dr."]},
           "tD": {"m": ["Herrn", "Herrn Dr."], "f": ["Frau", "Frau Dr."]}},
    "fr": {"t": {"m": ["M.", "Dr"], "f": ["Mme", "Dr"]}},
    "nl": {"t": {"m": ["dhr.", "de heer", "dr."], "f": ["mevr.", "mevrouw", "dr."]}},
    "es": {"el": {"m": ["el Sr.", "el Dr."], "f": ["la Sra.", "la Dra."]},
           "al": {"m": ["al Sr.", "al Dr."], "f": ["a la Sra.", "a la Dra."]}},
}
UNTITLED = {"t": "", "tD": "", "el": "", "al": "a"}
TITLE_MARK = re.compile(r"\{(t|tD|el|al)\} ")

PERSON_TEMPLATES = {
    "en": ["Ticket assigned to {t} {}.",
           "I spoke to {t} {} yesterday about the renewal.",
           "{t} {} will take over the account next month.",
           "The contract was countersigned by {t} {} on behalf of the client.",
           "\"We need the numbers by Friday,\" said {t} {}.",
           "{t} {}'s laptop was reported stolen on the train.",
           "Please loop in {t} {} from legal before we reply.",
           "According to {t} {}, the shipment left the warehouse on time."],
    "de": ["Das Ticket wurde {tD} {} zugewiesen.",
           "Ich habe gestern mit {tD} {} über die Verlängerung gesprochen.",
           "Ab nächstem Monat betreut {t} {} den Kunden.",
           "Der Vertrag wurde von {tD} {} gegengezeichnet.",
           "„Wir brauchen die Zahlen bis Freitag“, sagte {t} {}.",
           "Bitte {tD} {} aus der Rechtsabteilung einbinden, bevor wir antworten.",
           "Laut {tD} {} hat die Lieferung das Lager pünktlich verlassen."],
    "fr": ["Le ticket a été attribué à {t} {}.",
           "J'ai parlé hier avec {t} {} du renouvellement.",
           "{t} {} reprendra le dossier le mois prochain.",
           "Le contrat a été contresigné par {t} {} pour le compte du client.",
           "« Il nous faut les chiffres pour vendredi », a dit {t} {}.",
           "Selon {t} {}, la livraison a quitté l'entrepôt à l'heure."],
    "nl": ["Het ticket is toegewezen aan {t} {}.",
           "Ik heb gisteren met {t} {} over de verlenging gesproken.",
           "Vanaf volgende maand neemt {t} {} de klant over.",
           "Het contract is namens de klant getekend door {t} {}.",
           "„We hebben de cijfers vrijdag nodig”, zei {t} {}.",
           "Volgens {t} {} is de zending op tijd vertrokken."],
    "es": ["El ticket se ha asignado {al} {}.",
           "Ayer hablé con {el} {} sobre la renovación.",
           "A partir del mes que viene, la cuenta la llevará {el} {}.",
           "El contrato lo firmó {el} {} en nombre del cliente.",
           "«Necesitamos las cifras el viernes», dijo {el} {}.",
           "Según {el} {}, el envío salió del almacén a tiempo."],
}
PERSON_CUES = {
    "en": ["Contact: {}", "From: {}", "Signed by {} on behalf of the landlord.",
           "Approved and signed by {}."],
    "de": ["Ansprechpartner: {}", "Von: {}", "Unterschrieben von {} im Auftrag der Geschäftsführung.",
           "Contact: {}"],
    "fr": ["Contact : {}", "De : {}", "Signé par {} pour le compte du bailleur.", "From: {}"],
    "nl": ["Contactpersoon: {}", "Van: {}", "Ondertekend door {} namens de verhuurder.",
           "Contact: {}"],
    "es": ["Contacto: {}", "De: {}", "Firmado por {} en nombre del arrendador.", "From: {}"],
}


def apply_title(rng, lang, template, gender, titled):
    def repl(m):
        mark = m.group(1)
        if titled:
            return rng.choice(TITLES[lang][mark][gender]) + " "
        return UNTITLED[mark] + " " if UNTITLED[mark] else ""
    return TITLE_MARK.sub(repl, template)


def person_sentence(rng, lang):
    p = person(rng, lang)
    mode = rng.random()
    if mode < 0.27:
        template = rng.choice(PERSON_CUES[lang])
    else:
        template = apply_title(rng, lang, rng.choice(PERSON_TEMPLATES[lang]), p.gender, mode < 0.57)
    return fill(rng, lang, template, [pii(p.full, "PERSON")])


# ---------------------------------------------------------------------------------------------
# EMAIL

DOMAINS = {
    "en": ["gmail.com", "outlook.com", "northbridge-analytics.co.uk", "harbourfreight.com",
           "btinternet.com", "mail.bluefen.io", "yahoo.co.uk"],
    "de": ["gmx.de", "web.de", "t-online.de", "posteo.de", "nordwind-logistik.de",
           "alpenblick-software.de", "mail.stadtwerke-beispiel.de"],
    "fr": ["orange.fr", "laposte.net", "free.fr", "atelier-lumiere.fr", "transports-garonne.fr",
           "wanadoo.fr"],
    "nl": ["ziggo.nl", "kpnmail.nl", "xs4all.nl", "polderlicht.nl", "kanaalzicht-logistiek.nl",
           "hotmail.nl"],
    "es": ["gmail.com", "hotmail.es", "telefonica.net", "soluciones-meseta.es",
           "transportes-guadalquivir.es", "correo.ugr.es"],
    "tech": ["strongroom.io", "eu.support.tessellate.io", "ops.kestrel-labs.io", "proton.me"],
}
MAILBOXES = ["info", "support", "billing", "it-helpdesk", "accounts.payable", "noreply", "ops-alerts",
             "hr", "security", "invoices2024", "datenschutz", "facturation", "klantenservice",
             "facturacion", "team+onboarding"]
ASCII_FOLD = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ł": "l", "ı": "i", "Ł": "L"}


def ascii_name(s):
    s = "".join(ASCII_FOLD.get(c, c) for c in s.lower())
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if c.isascii() and (c.isalnum() or c == "-"))


def email_address(rng, lang, who=None, domain=None):
    domain = domain or rng.choice(DOMAINS[lang] if rng.random() < 0.8 else DOMAINS["tech"])
    if who is None and rng.random() < 0.25:
        return f"{rng.choice(MAILBOXES)}@{domain}"
    who = who or person(rng, lang)
    first, last = ascii_name(who.first), ascii_name(who.last)
    local = rng.choice((f"{first}.{last}", f"{first[0]}.{last}", f"{first}{last}",
                        f"{last}.{first}", f"{first}.{last}{rng.randint(1, 99)}",
                        f"{first}.{last}+{rng.choice(['invoices', 'crm', 'github', 'news'])}",
                        f"{first}-{last}", f"{first[0]}{last}"))
    return f"{local}@{domain}"


def email(rng, lang):
    return [pii(email_address(rng, lang), "EMAIL")]


# ---------------------------------------------------------------------------------------------
# PHONE: formats per country. N = digit 2-9, M = 4-9, F = 1-7, D = any digit; {area} and
# {mobile} come from the country's lists; everything else is literal.

PHONES = {
    "US": {"formats": ["(NDD) NDD-DDDD", "NDD-NDD-DDDD", "NDD.NDD.DDDD", "+1 NDD NDD DDDD",
                       "+1-NDD-NDD-DDDD", "NDDNDDDDDD"]},
    "UK": {"formats": ["+44 20 7DDD DDDD", "020 7DDD DDDD", "020 8DDD DDDD", "+44 {area} NDD DDDD",
                       "0{area} NDD DDDD", "07MDD DDDDDD", "+44 7MDD DDDDDD", "07MDDDDDDDD"],
           "area": ["161", "121", "131", "113", "117"]},
    "DE": {"formats": ["+49 {area} NDDDDDDD", "0{area} NDDDDDDD", "0{mobile} NDDDDDDD",
                       "+49 (0){area} NDDDDDD", "0{area}/NDDDDDD", "+49 {mobile} NDDDDDDD",
                       "0{mobile}NDDDDDDD"],
           "area": ["30", "40", "69", "89", "221", "211", "341", "711"],
           "mobile": ["151", "160", "170", "172", "176", "157"]},
    "FR": {"formats": ["+33 F DD DD DD DD", "0F DD DD DD DD", "0F.DD.DD.DD.DD", "+33 6 DD DD DD DD",
                       "06.DD.DD.DD.DD", "07 DD DD DD DD", "0FDDDDDDDD"]},
    "NL": {"formats": ["+31 {area} NDD DDDD", "0{area}-NDDDDDD", "06-NDDDDDDD", "+31 6 NDDDDDDD",
                       "06NDDDDDDD"],
           "area": ["20", "10", "30", "70", "40"]},
    "ES": {"formats": ["+34 6DD DDD DDD", "+34 6DD DD DD DD", "+34 91 NDD DD DD",
                       "+34 93 NDD DD DD"]},
}
HOME_PHONES = {"en": ["US", "UK"], "de": ["DE"], "fr": ["FR"], "nl": ["NL"], "es": ["ES"]}
PHONE_DIGIT = {"N": "23456789", "M": "456789", "F": "1234567", "D": DIGITS}


def phone_number(rng, lang):
    country = rng.choice(HOME_PHONES[lang] if rng.random() < 0.8 else list(PHONES))
    table = PHONES[country]
    fmt = rng.choice(table["formats"])
    fmt = fmt.replace("{area}", rng.choice(table.get("area", [""])))
    fmt = fmt.replace("{mobile}", rng.choice(table.get("mobile", [""])))
    while True:
        number = "".join(rng.choice(PHONE_DIGIT[c]) if c in PHONE_DIGIT else c for c in fmt)
        # US area codes like 911 are service codes, not areas
        if country != "US" or not re.search(r"(^|\D)\d11\D", number.lstrip("+1 -")):
            return number


def phone(rng, lang):
    return [pii(phone_number(rng, lang), "PHONE")]


# ---------------------------------------------------------------------------------------------
# CREDIT_CARD and LUHN_INVALID_CARD


def luhn_ok(number):
    total = 0
    for i, c in enumerate(reversed(number)):
        d = int(c)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_complete(payload):
    for d in DIGITS:
        if luhn_ok(payload + d):
            return payload + d
    raise AssertionError("unreachable")


def card_prefix(rng):
    brand = rng.choice(("visa", "visa", "mastercard", "mastercard", "amex", "discover"))
    if brand == "visa":
        return "4", 16
    if brand == "mastercard":
        if rng.random() < 0.7:
            return str(rng.randint(51, 55)), 16
        return str(rng.randint(2221, 2720)), 16
    if brand == "amex":
        return rng.choice(("34", "37")), 15
    return "6011", 16


def group_card(rng, number):
    sep = rng.choice(("", " ", " ", "-"))
    if not sep:
        return number
    sizes = (4, 6, 5) if len(number) == 15 else (4, 4, 4, 4)
    parts, i = [], 0
    for size in sizes:
        parts.append(number[i:i + size])
        i += size
    return sep.join(parts)


def credit_card(rng, lang):
    prefix, length = card_prefix(rng)
    number = luhn_complete(prefix + rand_digits(rng, length - len(prefix) - 1))
    return [pii(group_card(rng, number), "CREDIT_CARD")]


def luhn_invalid_card(rng, lang):
    prefix = rng.choice(("4", str(rng.randint(51, 55))))
    good = luhn_complete(prefix + rand_digits(rng, 15 - len(prefix)))
    bad = good[:-1] + str((int(good[-1]) + rng.randint(1, 9)) % 10)
    return [neg(group_card(rng, bad), "LUHN_INVALID_CARD")]


# ---------------------------------------------------------------------------------------------
# IBAN and BAD_IBAN: the BBAN layout per country (total length in the comment)

IBAN_BBAN = {
    "DE": lambda rng: rand_digits(rng, 8, True) + rand_digits(rng, 10),              # 22
    "GB": lambda rng: rng.choice(["WEST", "BARC", "LOYD", "NWBK", "HBUK", "MIDL"])
                      + rand_digits(rng, 14),                                         # 22
    "FR": lambda rng: rand_digits(rng, 23),                                           # 27
    "NL": lambda rng: rng.choice(["ABNA", "INGB", "RABO", "SNSB", "TRIO", "BUNQ", "KNAB"])
                      + rand_digits(rng, 10),                                         # 18
    "ES": lambda rng: rand_digits(rng, 20),                                           # 24
    "BE": lambda rng: belgian_bban(rng),                                              # 16
    "CH": lambda rng: rand_digits(rng, 17),                                           # 21
    "IT": lambda rng: rng.choice(UPPER) + rand_digits(rng, 22),                       # 27
}
IBAN_LENGTH = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "BE": 16, "CH": 21, "IT": 27}
HOME_IBANS = {"en": ["GB"], "de": ["DE", "CH"], "fr": ["FR", "BE", "CH"], "nl": ["NL", "BE"],
              "es": ["ES"]}


def belgian_bban(rng):
    body = rand_digits(rng, 10)
    check = int(body) % 97 or 97
    return f"{body}{check:02d}"


def mod97(s):
    """Remainder of the ISO 7064 mod-97 number for an alphanumeric string."""
    return int("".join(str(int(c, 36)) for c in s)) % 97


def iban_check(country, bban):
    return 98 - mod97(bban + country + "00")


def group_iban(rng, compact):
    if rng.random() < 0.4:
        return compact
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))


def iban_parts(rng, lang):
    country = rng.choice(HOME_IBANS[lang] if rng.random() < 0.7 else list(IBAN_BBAN))
    bban = IBAN_BBAN[country](rng)
    assert len(bban) + 4 == IBAN_LENGTH[country]
    return country, bban


def iban(rng, lang):
    country, bban = iban_parts(rng, lang)
    compact = f"{country}{iban_check(country, bban):02d}{bban}"
    return [pii(group_iban(rng, compact), "IBAN")]


def bad_iban(rng, lang):
    country, bban = iban_parts(rng, lang)
    good = iban_check(country, bban)
    wrong = rng.choice([c for c in range(2, 99) if c != good])
    compact = f"{country}{wrong:02d}{bban}"
    return [neg(group_iban(rng, compact), "BAD_IBAN")]


# ---------------------------------------------------------------------------------------------
# IP_ADDRESS

PORTS = (22, 443, 5432, 8080, 6379, 3000, 9090, 51820, 8443, 25)


def ipv4(rng):
    host, octet = (lambda: rng.randint(1, 254)), (lambda: rng.randint(0, 255))
    r = rng.random()
    if r < 0.25:
        return f"10.{octet()}.{octet()}.{host()}"
    if r < 0.4:
        return f"172.{rng.randint(16, 31)}.{octet()}.{host()}"
    if r < 0.6:
        return f"192.168.{octet()}.{host()}"
    if r < 0.75:
        return f"{rng.choice(['192.0.2', '198.51.100', '203.0.113'])}.{host()}"
    first = rng.choice([a for a in range(1, 224) if a not in (10, 127)])
    return f"{first}.{octet()}.{octet()}.{host()}"


def ipv6(rng):
    r = rng.random()
    if r < 0.1:
        return "::1"
    if r < 0.3:
        groups = [rng.randint(0, 0xffff) for _ in range(8)]
        groups[0], groups[1] = 0xfe80, 0
        groups[2:4] = [0, 0]
    elif r < 0.6:
        groups = [0x2001, 0xdb8] + [rng.choice((0, 0, rng.randint(1, 0xffff))) for _ in range(6)]
    else:
        groups = [rng.choice((0x2a00, 0x2a02, 0x2001, 0x2603, 0x2c0f)) + rng.randint(0, 0xff)]
        groups += [rng.choice((0, rng.randint(1, 0xfff), rng.randint(1, 0xffff))) for _ in range(7)]
    addr = ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups))
    form = rng.random()
    if form < 0.15:
        return addr.exploded
    if form < 0.25:
        return ":".join(f"{g:x}" for g in groups)
    return addr.compressed


def ip_address(rng, lang):
    deco = rng.random()
    if rng.random() < 0.65:
        if deco < 0.2:
            return [pii(ipv4(rng), "IP_ADDRESS"), plain(f":{rng.choice(PORTS)}")]
        if deco < 0.35:
            length = rng.choice((8, 12, 16, 24, 24, 26, 28))
            net = ipaddress.ip_network(f"{ipv4(rng)}/{length}", strict=False)
            return [pii(str(net.network_address), "IP_ADDRESS"), plain(f"/{length}")]
        return [pii(ipv4(rng), "IP_ADDRESS")]
    if deco < 0.2:
        return [plain("["), pii(ipv6(rng), "IP_ADDRESS"), plain(f"]:{rng.choice(PORTS)}")]
    if deco < 0.3:
        length = rng.choice((48, 56, 64))
        net = ipaddress.ip_network(f"{ipv6(rng)}/{length}", strict=False)
        return [pii(net.network_address.compressed, "IP_ADDRESS"), plain(f"/{length}")]
    return [pii(ipv6(rng), "IP_ADDRESS")]


# ---------------------------------------------------------------------------------------------
# US_SSN and UK_NINO


def us_ssn(rng, lang):
    area = rng.choice([a for a in range(1, 900) if a != 666])
    group, serial = rng.randint(1, 99), rng.randint(1, 9999)
    sep = rng.choice(("-", "-", " "))
    return [pii(f"{area:03d}{sep}{group:02d}{sep}{serial:04d}", "US_SSN")]


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"
NINO_BANNED = ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ")


def uk_nino(rng, lang):
    while True:
        prefix = rng.choice(NINO_FIRST) + rng.choice(NINO_SECOND)
        if prefix not in NINO_BANNED:
            break
    num, suffix = rand_digits(rng, 6), rng.choice("ABCD")
    if rng.random() < 0.5:
        return [pii(f"{prefix}{num}{suffix}", "UK_NINO")]
    return [pii(f"{prefix} {num[:2]} {num[2:4]} {num[4:]} {suffix}", "UK_NINO")]


# ---------------------------------------------------------------------------------------------
# API_KEY: vendor tokens, and high-entropy values right after a key-like name


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(rng):
    alg = rng.choice(("HS256", "HS256", "RS256", "ES256"))
    iat = int(rand_datetime(rng).timestamp())
    header = {"alg": alg, "typ": "JWT"}
    payload = {"sub": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "iat": iat,
               "exp": iat + 3600 * rng.randint(1, 24),
               "scope": rng.choice(("read", "read write", "admin", "documents:read"))}
    signature = rng.randbytes({"HS256": 32, "RS256": 256, "ES256": 64}[alg])
    return ".".join((b64url(json.dumps(header, separators=(",", ":")).encode()),
                     b64url(json.dumps(payload, separators=(",", ":")).encode()),
                     b64url(signature)))


def vendor_token(rng):
    """(environment variable it usually lives in, token)"""
    vendor = rng.choice(("openai", "openai-proj", "anthropic", "github", "github-pat", "gitlab",
                         "slack", "aws", "google", "stripe", "jwt"))
    if vendor == "openai":
        return "OPENAI_API_KEY", "sk-" + mixed_str(rng, ALNUM, 48)
    if vendor == "openai-proj":
        return "OPENAI_API_KEY", "sk-proj-" + rand_str(rng, URLSAFE, rng.randint(60, 100))
    if vendor == "anthropic":
        return "ANTHROPIC_API_KEY", "sk-ant-api03-" + rand_str(rng, URLSAFE, rng.randint(90, 95))
    if vendor == "github":
        return "GITHUB_TOKEN", rng.choice(("ghp_", "gho_", "ghs_", "ghu_")) + mixed_str(rng, ALNUM, 36)
    if vendor == "github-pat":
        return "GITHUB_TOKEN", "github_pat_" + rand_str(rng, ALNUM + "_", 82)
    if vendor == "gitlab":
        return "GITLAB_TOKEN", "glpat-" + rand_str(rng, URLSAFE, 20)
    if vendor == "slack":
        if rng.random() < 0.5:
            return "SLACK_BOT_TOKEN", (f"xoxb-{rand_digits(rng, 12, True)}-"
                                       f"{rand_digits(rng, 13, True)}-{mixed_str(rng, ALNUM, 24)}")
        return "SLACK_USER_TOKEN", (f"xoxp-{rand_digits(rng, 12, True)}-{rand_digits(rng, 12, True)}"
                                    f"-{rand_digits(rng, 13, True)}-{rand_str(rng, HEX, 32)}")
    if vendor == "aws":
        return "AWS_ACCESS_KEY_ID", "AKIA" + rand_str(rng, BASE32, 16)
    if vendor == "google":
        return "GOOGLE_API_KEY", "AIza" + rand_str(rng, URLSAFE, 35)
    if vendor == "stripe":
        return "STRIPE_SECRET_KEY", (rng.choice(("sk_live_", "rk_live_"))
                                     + mixed_str(rng, ALNUM, rng.randint(24, 34)))
    return "AUTH_TOKEN", jwt(rng)


def high_entropy(rng, key=""):
    """20-64 random characters: base64, hex or alphanumeric (with digits and mixed case)."""
    if "aws_secret" in key.lower():
        return mixed_str(rng, BASE64, 40)
    style = rng.choice(("base64", "hex", "alnum"))
    while True:
        if style == "base64":
            s = base64.b64encode(rng.randbytes(rng.randint(15, 45))).decode()
            if mixed(s):
                return s
        elif style == "hex":
            s = rng.randbytes(rng.randint(10, 32)).hex()
            if any(c.isdigit() for c in s) and any(c.isalpha() for c in s):
                return s
        else:
            return mixed_str(rng, ALNUM, rng.randint(20, 64))


# (text before the secret, text after it)
NAMED_SECRET_FORMS = [("api_key=", ""), ("API_KEY: ", ""), ('"secret": "', '"'),
                      ("client_secret=", ""), ("token: ", ""), ("password=", ""),
                      ("DB_PASSWORD=", ""), ("aws_secret_access_key = ", ""),
                      ("Authorization: Bearer ", ""), ("SECRET_KEY=", ""), ('"api_key": "', '"'),
                      ("x-api-key: ", "")]
CONFIG_SECRET_KEYS = ["api_key", "client_secret", "token", "password", "db_password",
                      "aws_secret_access_key", "secret", "secret_key", "authorization"]


def api_key(rng, lang):
    r = rng.random()
    if r < 0.45:
        return [pii(vendor_token(rng)[1], "API_KEY")]
    if r < 0.6:
        name, token = vendor_token(rng)
        return [plain(f"{name}="), pii(token, "API_KEY")]
    before, after = rng.choice(NAMED_SECRET_FORMS)
    if before.startswith("Authorization") and rng.random() < 0.4:
        value = jwt(rng)
    else:
        value = high_entropy(rng, before)
    return [plain(before), pii(value, "API_KEY"), plain(after)]


def api_key_entry(rng):
    """(config key, value pieces) for env/yaml/json blocks."""
    if rng.random() < 0.5:
        name, token = vendor_token(rng)
        return name.lower(), [pii(token, "API_KEY")]
    key = rng.choice(CONFIG_SECRET_KEYS)
    if key == "authorization":
        value = jwt(rng) if rng.random() < 0.4 else high_entropy(rng)
        return key, [plain("Bearer "), pii(value, "API_KEY")]
    return key, [pii(high_entropy(rng, key), "API_KEY")]


# ---------------------------------------------------------------------------------------------
# PRIVATE_KEY: plain, JSON-escaped or a YAML block scalar

PEM_TYPES = [("PRIVATE KEY", "MIIE"), ("RSA PRIVATE KEY", "MIIE"), ("EC PRIVATE KEY", "MHcCAQEE"),
             ("OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXktdjEAAAAA")]


def pem_lines(rng):
    label, start = rng.choice(PEM_TYPES)
    count = rng.randint(4, 12)
    body = [rand_str(rng, BASE64, 64) for _ in range(count)]
    body[0] = start + body[0][len(start):]
    if rng.random() < 0.6:
        tail = rand_str(rng, BASE64, rng.randint(8, 60))
        body[-1] = tail + rng.choice(("", "=", "=="))
    return [f"-----BEGIN {label}-----", *body, f"-----END {label}-----"]


def private_key(rng, lang, encoding="plain", indent=0):
    lines = pem_lines(rng)
    if encoding == "json":
        return [pii("\\n".join(lines), "PRIVATE_KEY"), plain("\\n")]
    if encoding == "yaml":
        return [pii(("\n" + " " * indent).join(lines), "PRIVATE_KEY")]
    return [pii("\n".join(lines), "PRIVATE_KEY")]


# ---------------------------------------------------------------------------------------------
# URL_PASSWORD

URL_SCHEMES = {  # scheme: (hosts, default port, paths)
    "https": (["files.nordwind-logistik.de", "dav.example.org", "backup.polderlicht.nl"], "",
              ["/remote.php/dav", "/share/", "/"]),
    "http": (["intranet.local", "printer-3.office.lan", "nas.home.arpa"], ":8080", ["/", "/admin"]),
    "postgres": (["db.internal", "db-primary.prod.internal", "pg.eu-central.example.net"], ":5432",
                 ["/prod", "/app", "/strongroom"]),
    "postgresql": (["db.internal", "analytics-db.internal"], ":5432", ["/warehouse", "/prod"]),
    "mysql": (["mysql-01.eu-central.internal", "db.shop.local"], ":3306", ["/shop", "/wordpress"]),
    "mongodb": (["mongo-0.mongo.svc.cluster.local", "mongo.internal"], ":27017", ["/app", "/admin"]),
    "mongodb+srv": (["cluster0.ab1cd.mongodb.net", "prod.x7k2p.mongodb.net"], "",
                    ["/app?retryWrites=true&w=majority", "/orders"]),
    "redis": (["redis.cache.local", "cache.internal"], ":6379", ["/0", "/1", ""]),
    "amqp": (["mq.internal", "rabbitmq.svc.local"], ":5672", ["/", "/vhost"]),
    "ftp": (["ftp.example.net", "files.atelier-lumiere.fr"], ":21", ["/pub/", "/incoming/"]),
    "smtp": (["smtp.mailhost.example.com", "mail.soluciones-meseta.es"], ":587", [""]),
}
URL_USERS = ["app", "admin", "svc_backup", "deploy", "readonly", "root", "guest", "default",
             "strongroom", "etl_user", "mailer"]
WEAK_PASSWORDS = ["hunter2", "changeme", "Passw0rd!", "letmein", "Sommer2024!", "admin123", "secret",
                  "postgres", "guest", "qwerty", "welkom01", "motdepasse"]
URL_PASSWORD_CHARS = ALNUM + "!$%*-_.~"


def url_password(rng, lang, scheme=None):
    scheme = scheme or rng.choice(list(URL_SCHEMES))
    hosts, port, paths = URL_SCHEMES[scheme]
    if rng.random() < 0.3:
        password = rng.choice(WEAK_PASSWORDS)
    else:
        password = rand_str(rng, URL_PASSWORD_CHARS, rng.randint(10, 24))
    user = "" if scheme == "redis" and rng.random() < 0.4 else rng.choice(URL_USERS)
    if rng.random() < 0.3:
        port = ""
    return [plain(f"{scheme}://{user}:"), pii(password, "URL_PASSWORD"),
            plain(f"@{rng.choice(hosts)}{port}{rng.choice(paths)}")]


# ---------------------------------------------------------------------------------------------
# Hard negatives. Functions return pieces; a plain prefix is context (carrier, "commit ", "ts=").


def year(rng):
    return rng.randint(2019, 2025)


def order_number(rng, lang):
    f = rng.randrange(5)
    if f == 0:
        value = f"#{rng.choice('ABCDS')}-{year(rng)}-{rng.randint(1, 999999):06d}"
    elif f == 1:
        value = rand_digits(rng, rng.randint(8, 12), True)
    elif f == 2:
        value = f"{year(rng)}-{rng.randint(100, 999)}-{rng.randint(100, 999)}"
    elif f == 3:
        value = f"PO-{rng.randint(10000, 99999)}"
    else:
        value = f"SO-{year(rng)}-{rng.randint(1, 99999):05d}"
    return [neg(value, "ORDER_NUMBER")]


def ups_check(body):
    total = 0
    for i, c in enumerate(body):
        d = int(c) if c.isdigit() else (ord(c) - 63) % 10
        total += d * 2 if i % 2 else d
    return str((10 - total % 10) % 10)


def tracking_parts(rng):
    f = rng.randrange(5)
    if f == 0:
        body = rand_str(rng, UPPER + DIGITS, 6) + rand_digits(rng, 9)
        return "UPS", "1Z" + body + ups_check(body)
    if f == 1:
        d = rng.choice(("9400", "9205", "9361")) + rand_digits(rng, 18)
        return "USPS", " ".join(d[i:i + 4] for i in range(0, 22, 4))
    if f == 2:
        return "DHL", rand_digits(rng, 10, True)
    if f == 3:
        return "DHL", "JD" + rand_digits(rng, 18)
    return "PostNL", "3S" + rand_str(rng, UPPER, 4) + rand_digits(rng, 7)


def tracking_number(rng, lang):
    carrier, value = tracking_parts(rng)
    return [plain(carrier + " "), neg(value, "TRACKING_NUMBER")]


def ticket_id(rng, lang):
    f = rng.randrange(5)
    if f == 0:
        value = f"{rng.choice(['JIRA', 'OPS', 'SEC', 'INFRA', 'SUP', 'BILL'])}-{rng.randint(1, 99999)}"
    elif f == 1:
        value = f"{rng.choice(['INC', 'RITM', 'CHG'])}{rng.randint(1, 9999999):07d}"
    elif f == 2:
        value = f"#{rng.randint(1000, 999999)}"
    elif f == 3:
        value = f"SR-{year(rng)}-{rng.randint(1, 9999):04d}"
    else:
        value = f"JIRA-{rng.randint(100, 99999)}"
    return [neg(value, "TICKET_ID")]


def invoice_number(rng, lang):
    y, n = year(rng), rng.randint(1, 99999)
    value = rng.choice((f"INV-{y}-{n:05d}", f"{y}/{rng.randint(1, 12):02d}/{n % 10000:04d}",
                        f"{y}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}-{n % 100:02d}",
                        f"FA-{y}-{n % 10000:04d}", f"F{y}-{n:06d}", f"RE-{y}-{n % 10000:04d}"))
    return [neg(value, "INVOICE_NUMBER")]


def creditor_reference(rng):
    """ISO 11649 RF reference: passes mod-97 like an IBAN, but RF is no country."""
    ref = rand_digits(rng, rng.randint(6, 15), True)
    if rng.random() < 0.3:
        ref = rand_str(rng, UPPER, 2) + ref
    compact = f"RF{iban_check('RF', ref):02d}{ref}"
    if rng.random() < 0.6:
        return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))
    return compact


def payment_reference(rng, lang):
    f = rng.randrange(3)
    if f == 0:
        value = creditor_reference(rng)
    elif f == 1:
        d = rand_datetime(rng)
        value = f"E2E-{d:%Y%m%d}-{rng.randint(1, 999999):06d}"
    else:
        value = " ".join(rand_digits(rng, 4) for _ in range(3))
    return [neg(value, "PAYMENT_REFERENCE")]


def uuid_text(rng):
    u = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return u.upper() if rng.random() < 0.3 else u


def uuid_value(rng, lang):
    return [neg(uuid_text(rng), "UUID")]


# variant: (prose labels, config key)
HASH_VARIANTS = {"sha256": (["SHA-256 ", "sha256sum "], "checksum_sha256"),
                 "sha1": (["SHA-1 "], "sha1"),
                 "md5": (["MD5 "], "md5"),
                 "git": (["commit "], "commit"),
                 "sri": (['integrity="'], "integrity")}


def hash_parts(rng):
    variant = rng.choice(list(HASH_VARIANTS))
    if variant == "sha256":
        value = rng.randbytes(32).hex()
    elif variant == "sha1":
        value = rng.randbytes(20).hex()
    elif variant == "md5":
        value = rng.randbytes(16).hex()
    elif variant == "git":
        while True:
            value = rand_str(rng, HEX, rng.randint(7, 12))
            if any(c.isalpha() for c in value):
                break
    else:
        value = "sha256-" + base64.b64encode(rng.randbytes(32)).decode()
    return variant, value


def hash_value(rng, lang):
    variant, value = hash_parts(rng)
    label = rng.choice(HASH_VARIANTS[variant][0])
    return [plain(label), neg(value, "HASH"), plain('"' if variant == "sri" else "")]


def timestamp_parts(rng, dated_only=False):
    """(plain prefix, value)"""
    d = rand_datetime(rng)
    forms = ["iso", "iso_ms", "de", "us"] if dated_only else ["iso", "iso_ms", "unix", "de", "us",
                                                              "time"]
    form = rng.choice(forms)
    if form == "iso":
        return "", f"{d:%Y-%m-%dT%H:%M:%S}Z"
    if form == "iso_ms":
        offset = rng.choice(("+01:00", "+02:00", "-05:00", "+00:00"))
        return "", f"{d:%Y-%m-%d %H:%M:%S}.{rng.randint(0, 999):03d}{offset}"
    if form == "unix":
        return "ts=", str(int(d.timestamp()))
    if form == "de":
        return "", f"{d:%d.%m.%Y}"
    if form == "us":
        return "", f"{d:%m/%d/%Y}"
    return "", f"{d:%H:%M:%S}"


def timestamp(rng, lang):
    prefix, value = timestamp_parts(rng)
    return [plain(prefix), neg(value, "TIMESTAMP")]


def looks_like_ipv4(value):
    parts = value.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts)


def version_parts(rng):
    """(plain prefix, value). A dotted 4-part value with every part <= 255 always gets a word."""
    a, b, c = rng.randint(0, 12), rng.randint(0, 40), rng.randint(0, 30)
    f = rng.randrange(8)
    if f == 0:
        return "", f"v{a}.{b}.{c}"
    if f == 1:
        return rng.choice(("Strongroom ", "nginx/", "node ", "")), f"{a}.{b}.{c}"
    if f == 2:
        return "", f"{a}.{b}.{c}-{rng.choice(('rc', 'beta', 'alpha'))}.{rng.randint(1, 5)}"
    if f == 3:
        return rng.choice(("version ", "Version ")), (f"10.0.{rng.randint(19041, 22631)}."
                                                      f"{rng.randint(1, 4000)}")
    if f == 4:
        return "Chrome/", (f"{rng.randint(110, 126)}.0.{rng.randint(5000, 6500)}."
                           f"{rng.randint(50, 200)}")
    if f == 5:
        return "Firefox/", f"{rng.randint(115, 125)}.0"
    if f == 6:
        return rng.choice(("build ", "Build ", "version ")), f"{a}.{b}.{c}.{rng.randint(0, 9)}"
    return "", f"v{a}.{b}.{c}.{rng.randint(0, 99)}"


def version(rng, lang):
    prefix, value = version_parts(rng)
    return [plain(prefix), neg(value, "VERSION")]


PLAIN_HOSTS = ["example.com", "docs.example.org", "status.nordwind-logistik.de", "wiki.intranet.local",
               "portal.atelier-lumiere.fr", "api.kanaalzicht-logistiek.nl", "www.soluciones-meseta.es",
               "downloads.example.net"]
URL_WORDS = ["docs", "setup", "api", "v2", "invoices", "reports", "2024", "guide", "install", "faq",
             "billing", "releases", "help", "status"]


def plain_url_text(rng):
    f = rng.randrange(6)
    path = "/".join(rng.choice(URL_WORDS) for _ in range(rng.randint(1, 3)))
    if f <= 1:
        url = f"https://{rng.choice(PLAIN_HOSTS)}/{path}"
        if rng.random() < 0.5:
            url += rng.choice(("?x=1", "?page=2&sort=desc", "?lang=de", "?ref=mail"))
        if rng.random() < 0.3:
            url += rng.choice(("#y", "#section-3", "#top"))
        return url
    if f == 2:
        return (f"https://{rng.choice(URL_USERS)}@git.{rng.choice(['example.org', 'intranet.local'])}"
                f"/{rng.choice(URL_WORDS)}.git")
    if f == 3:
        scheme = rng.choice(("postgres", "mysql", "redis", "amqp"))
        hosts, port, paths = URL_SCHEMES[scheme]
        return f"{scheme}://{rng.choice(hosts)}{port}{rng.choice(paths)}"
    if f == 4:
        return f"http://intranet.{rng.choice(['local', 'lan'])}/wiki/{rng.choice(URL_WORDS)}"
    return f"ftp://files.{rng.choice(['example.net', 'atelier-lumiere.fr'])}/pub/releases/"


def plain_url(rng, lang):
    return [neg(plain_url_text(rng), "PLAIN_URL")]


# (prose prefix, placeholder value, config key); an empty prefix means it stands alone
PLACEHOLDERS = [("", "<YOUR_API_KEY>", "api_key"), ("DB_PASSWORD=", "${DB_PASSWORD}", "db_password"),
                ("api_key: ", "{{ api_key }}", "api_key"), ("api_key=", "YOUR_API_KEY_HERE", "api_key"),
                ("", "sk-...", "openai_api_key"), ("password: ", "********", "password"),
                ("token=", "xxxxxxxxxxxxxxxxxxxx", "token"), ("", "<EMAIL_1>", "email"),
                ("API_TOKEN=", "%API_TOKEN%", "api_token"), ("client_secret=", "<client-secret>",
                                                            "client_secret"),
                ("password=", "REPLACE_ME", "password"), ("token: ", "${GITHUB_TOKEN}", "token"),
                ("api_key=", "your-api-key", "api_key"), ("", "<PASSWORD>", "password"),
                ("secret: ", "{{ .Values.secret }}", "secret")]

# (key, separator, value, literal in JSON)
LOW_ENTROPY = [("password", "=", "changeme", False), ("api_key", "=", "test", False),
               ("secret", ": ", "true", True), ("token", ": ", "null", True),
               ("timeout", "=", "30", True), ("password", ": ", "password", False),
               ("api_key", "=", "demo", False), ("DB_PASSWORD", "=", "postgres", False),
               ("token", "=", "none", False), ("secret", "=", "false", True),
               ("max_retries", "=", "5", True), ("client_secret", "=", "changeme", False),
               ("password", "=", "admin", False), ("API_KEY", "=", "dummy", False),
               ("password", " = ", "1234", False), ("token", ": ", "disabled", False)]


def placeholder(rng, lang):
    prefix, value, _ = rng.choice(PLACEHOLDERS)
    return [plain(prefix), neg(value, "PLACEHOLDER")]


def low_entropy_secret(rng, lang):
    key, sep, value, _ = rng.choice(LOW_ENTROPY)
    return [plain(key + sep), neg(value, "LOW_ENTROPY_SECRET")]


# ---------------------------------------------------------------------------------------------
# Prose templates: one "{}" slot for the value; {price}, {qty}, {pct}, {room}, {place}, {n},
# {n2}, {exp} are ordinary numbers.

CARD_TEMPLATES = {
    "en": ["Please charge the card {} for the renewal.",
           "The customer read out the card number {} on the call.",
           "Card on file: {}, expires {exp}.",
           "Payment failed for card {} twice today."],
    "de": ["Bitte buchen Sie die Verlängerung von der Karte {} ab.",
           "Der Kunde hat am Telefon die Kartennummer {} durchgegeben.",
           "Hinterlegte Karte: {}, gültig bis {exp}.",
           "Die Zahlung mit der Karte {} ist heute zweimal fehlgeschlagen."],
    "fr": ["Merci de débiter la carte {} pour le renouvellement.",
           "Le client a dicté le numéro de carte {} au téléphone.",
           "Carte enregistrée : {}, expire fin {exp}.",
           "Le paiement avec la carte {} a échoué deux fois aujourd'hui."],
    "nl": ["Schrijf de verlenging af van kaart {}.",
           "De klant noemde aan de telefoon kaartnummer {}.",
           "Opgeslagen kaart: {}, geldig tot {exp}.",
           "De betaling met kaart {} is vandaag twee keer mislukt."],
    "es": ["Cargue la renovación a la tarjeta {}.",
           "El cliente dictó por teléfono el número de tarjeta {}.",
           "Tarjeta guardada: {}, caduca {exp}.",
           "El pago con la tarjeta {} ha fallado dos veces hoy."],
}
IBAN_TEMPLATES = {
    "en": ["Please transfer the deposit to IBAN {}.",
           "Our bank details have changed, the new IBAN is {}.",
           "The refund of {price} to {} was initiated this morning.",
           "Account holder: Harbour Freight Co., IBAN: {}"],
    "de": ["Bitte überweisen Sie die Kaution von {price} auf {}.",
           "Unsere Bankverbindung hat sich geändert, neue IBAN: {}.",
           "Die Erstattung auf {} wurde heute veranlasst.",
           "Kontoinhaber: Nordwind Logistik GmbH, IBAN {}"],
    "fr": ["Merci de virer l'acompte de {price} sur l'IBAN {}.",
           "Nos coordonnées bancaires ont changé : nouvel IBAN {}.",
           "Le remboursement vers {} a été lancé ce matin."],
    "nl": ["Maak de borg van {price} over naar IBAN {}.",
           "Ons rekeningnummer is gewijzigd, het nieuwe IBAN is {}.",
           "De terugbetaling naar {} is vanochtend gestart."],
    "es": ["Transfiera la fianza de {price} al IBAN {}.",
           "Hemos cambiado de banco, el nuevo IBAN es {}.",
           "El reembolso a {} se ha iniciado esta mañana."],
}

PROSE = {
    "EMAIL": {
        "en": ["You can reach me at {} any time.",
               "Please send the signed contract to {} by Friday.",
               "I've added {} to the distribution list.",
               "Could you forward the report to {}?",
               "Please write to <{}> for access requests.",
               "The footer still links to \"mailto:{}\" instead of the form."],
        "de": ["Sie erreichen mich jederzeit unter {}.",
               "Bitte schicken Sie den unterschriebenen Vertrag bis Freitag an {}.",
               "Ich habe {} in den Verteiler aufgenommen.",
               "Die Rechnung ging versehentlich an {} statt an die Buchhaltung.",
               "Rückfragen bitte an <{}>."],
        "fr": ["Vous pouvez me joindre à l'adresse {}.",
               "Merci d'envoyer le contrat signé à {} avant vendredi.",
               "J'ai ajouté {} à la liste de diffusion.",
               "Pour toute question, écrivez à <{}>.",
               "Le formulaire envoie les réponses à {} au lieu du service client."],
        "nl": ["Je kunt me bereiken via {}.",
               "Stuur het getekende contract vóór vrijdag naar {}.",
               "Ik heb {} aan de verzendlijst toegevoegd.",
               "Vragen kun je mailen naar <{}>.",
               "De factuur is per ongeluk naar {} gestuurd."],
        "es": ["Puede escribirme a {} cuando quiera.",
               "Envíe el contrato firmado a {} antes del viernes.",
               "He añadido {} a la lista de distribución.",
               "Para dudas, escriba a <{}>.",
               "La factura se envió por error a {}."],
    },
    "PHONE": {
        "en": ["Call me on {} if anything breaks.", "The on-call number is {}.",
               "You can reach the front desk at {} between 9 and 5.",
               "Please call back on {} after 2 pm.", "Mobile: {}"],
        "de": ["Bei Problemen erreichen Sie mich unter {}.",
               "Die Rufbereitschaft ist unter {} erreichbar.",
               "Bitte rufen Sie mich unter {} zurück.", "Tel.: {}",
               "Meine neue Handynummer lautet {}."],
        "fr": ["En cas de problème, appelez-moi au {}.", "Le numéro d'astreinte est le {}.",
               "Merci de me rappeler au {} après 14 h.", "Tél. : {}",
               "Mon nouveau numéro de portable est le {}."],
        "nl": ["Bij storingen ben ik bereikbaar op {}.",
               "Het nummer van de storingsdienst is {}.", "Bel me even terug op {}.", "Tel.: {}",
               "Mijn nieuwe mobiele nummer is {}."],
        "es": ["Si algo falla, llámeme al {}.", "El teléfono de guardia es el {}.",
               "Por favor, devuélvame la llamada al {}.", "Tel.: {}",
               "Mi nuevo número de móvil es el {}."],
    },
    "CREDIT_CARD": CARD_TEMPLATES,
    "IBAN": IBAN_TEMPLATES,
    "IP_ADDRESS": {
        "en": ["The server at {} stopped answering around midnight.",
               "We blocked {} after {n2} failed logins.",
               "The VPN hands out addresses from {}.",
               "Traffic is forwarded to {} internally."],
        "de": ["Der Server {} antwortet seit Mitternacht nicht mehr.",
               "Nach {n2} fehlgeschlagenen Logins haben wir {} gesperrt.",
               "Das VPN vergibt Adressen aus {}.",
               "Intern wird der Traffic an {} weitergeleitet."],
        "fr": ["Le serveur {} ne répond plus depuis minuit.",
               "Nous avons bloqué {} après {n2} tentatives de connexion.",
               "Le VPN attribue des adresses dans {}.",
               "En interne, le trafic est redirigé vers {}."],
        "nl": ["De server op {} reageert sinds middernacht niet meer.",
               "We hebben {} geblokkeerd na {n2} mislukte inlogpogingen.",
               "De VPN deelt adressen uit in {}.",
               "Intern wordt het verkeer doorgestuurd naar {}."],
        "es": ["El servidor {} dejó de responder a medianoche.",
               "Bloqueamos {} tras {n2} intentos fallidos.",
               "La VPN asigna direcciones de {}.",
               "Internamente el tráfico se reenvía a {}."],
    },
    "US_SSN": {
        "en": ["My SSN is {}.", "Social Security number: {}",
               "Employee soc. sec. no. {} is missing from the W-2 form.",
               "The applicant's SSN {} does not match our records."],
        "de": ["Die US-Sozialversicherungsnummer (SSN) lautet {}.", "SSN des Mitarbeiters: {}",
               "Für das US-Formular brauchen wir noch die Social Security Number {}."],
        "fr": ["Son numéro de sécurité sociale américain (SSN) est le {}.", "SSN du salarié : {}",
               "Le formulaire W-4 mentionne la Social Security number {}."],
        "nl": ["Het Amerikaanse Social Security-nummer (SSN) is {}.", "SSN van de medewerker: {}",
               "Voor het formulier hebben we nog Social Security number {} nodig."],
        "es": ["El número de la Seguridad Social de EE. UU. (SSN) es {}.", "SSN del empleado: {}",
               "El formulario W-2 indica el Social Security number {}."],
    },
    "UK_NINO": {
        "en": ["Her National Insurance number is {}.", "NI number: {}",
               "Please confirm the NINO {} with HMRC."],
        "de": ["Die britische National Insurance Number lautet {}.", "NI-Nummer: {}"],
        "fr": ["Numéro de National Insurance britannique : {}.", "NINO du salarié : {}"],
        "nl": ["Het Britse National Insurance-nummer is {}.", "NI-nummer: {}"],
        "es": ["El número de National Insurance británico es {}.", "NINO del empleado: {}"],
    },
    "API_KEY": {
        "en": ["Someone committed {} to the public repo yesterday.",
               "Please rotate this right away: {}",
               "The CI log printed {} in clear text.",
               "I found {} in an old chat thread.",
               "The integration still uses {} from last year."],
        "de": ["Jemand hat gestern {} ins öffentliche Repo committet.",
               "Bitte sofort rotieren: {}",
               "Im CI-Log stand {} im Klartext.",
               "In einem alten Chat-Verlauf habe ich {} gefunden."],
        "fr": ["Quelqu'un a commité {} dans le dépôt public hier.",
               "À révoquer tout de suite : {}",
               "Le journal de la CI affichait {} en clair.",
               "J'ai retrouvé {} dans un vieux fil de discussion."],
        "nl": ["Iemand heeft gisteren {} in de publieke repo gezet.",
               "Graag direct intrekken: {}",
               "In het CI-log stond {} gewoon leesbaar.",
               "Ik vond {} in een oude chatdraad."],
        "es": ["Alguien subió ayer {} al repositorio público.",
               "Hay que revocarlo ya: {}",
               "El log de CI mostraba {} en texto plano.",
               "Encontré {} en un hilo antiguo del chat."],
    },
    "PRIVATE_KEY": {
        "en": ["Here is the deploy key, please store it in the vault:\n{}\n"
               "Delete this message afterwards.",
               "The old server still had this key in /root/.ssh:\n{}"],
        "de": ["Hier der Deploy-Key, bitte im Tresor ablegen:\n{}\nDanach die Nachricht bitte löschen.",
               "Auf dem alten Server lag noch dieser Schlüssel unter /root/.ssh:\n{}"],
        "fr": ["Voici la clé de déploiement, à ranger dans le coffre :\n{}\n"
               "Supprimez ce message ensuite.",
               "L'ancien serveur avait encore cette clé dans /root/.ssh :\n{}"],
        "nl": ["Hier is de deploy-sleutel, zet hem in de kluis:\n{}\nVerwijder dit bericht daarna.",
               "Op de oude server stond deze sleutel nog in /root/.ssh:\n{}"],
        "es": ["Aquí va la clave de despliegue, guárdela en el almacén de secretos:\n{}\n"
               "Borre este mensaje después.",
               "El servidor antiguo aún tenía esta clave en /root/.ssh:\n{}"],
    },
    "URL_PASSWORD": {
        "en": ["The app connects to {} at startup.",
               "Set the connection string to {} and restart the worker.",
               "The URL in the wiki is {}, is that still current?"],
        "de": ["Die Anwendung verbindet sich beim Start mit {}.",
               "Setz den Connection-String auf {} und starte den Worker neu.",
               "Im Wiki steht als URL {}, ist das noch aktuell?"],
        "fr": ["L'application se connecte à {} au démarrage.",
               "Mettez la chaîne de connexion à {} puis redémarrez le worker.",
               "Dans le wiki, l'URL indiquée est {}, c'est toujours valable ?"],
        "nl": ["De applicatie maakt bij het opstarten verbinding met {}.",
               "Zet de connection string op {} en herstart de worker.",
               "In de wiki staat als URL {}, klopt dat nog?"],
        "es": ["La aplicación se conecta a {} al arrancar.",
               "Cambie la cadena de conexión a {} y reinicie el worker.",
               "En la wiki la URL es {}, ¿sigue siendo válida?"],
    },
    "ORDER_NUMBER": {
        "en": ["Your order {} has shipped.", "Order {} was cancelled at the customer's request.",
               "Can you check the status of order {}?"],
        "de": ["Ihre Bestellung {} wurde versandt.", "Bestellnummer {} wurde storniert.",
               "Können Sie den Status der Bestellung {} prüfen?"],
        "fr": ["Votre commande n° {} a été expédiée.",
               "La commande {} a été annulée à la demande du client.",
               "Pouvez-vous vérifier l'état de la commande {} ?"],
        "nl": ["Je bestelling {} is verzonden.", "Bestelnummer {} is geannuleerd.",
               "Kun je de status van bestelling {} nakijken?"],
        "es": ["Su pedido {} ha sido enviado.", "El pedido n.º {} se canceló a petición del cliente.",
               "¿Puede comprobar el estado del pedido {}?"],
    },
    "TRACKING_NUMBER": {
        "en": ["Your parcel is on its way, tracking number {}.",
               "The carrier lists {} as delivered, but nothing arrived."],
        "de": ["Ihr Paket ist unterwegs, Sendungsnummer {}.",
               "Laut Sendungsverfolgung wurde {} zugestellt, angekommen ist aber nichts."],
        "fr": ["Votre colis est en route, numéro de suivi {}.",
               "Le transporteur indique {} comme livré, mais rien n'est arrivé."],
        "nl": ["Je pakket is onderweg, track-and-trace-code {}.",
               "Volgens de vervoerder is {} bezorgd, maar er is niets aangekomen."],
        "es": ["Su paquete está en camino, número de seguimiento {}.",
               "La empresa de transporte marca {} como entregado, pero no ha llegado nada."],
    },
    "TICKET_ID": {
        "en": ["This is tracked in {}.", "See {} for the full history.", "Closing as duplicate of {}."],
        "de": ["Das wird in {} verfolgt.", "Details siehe {}.", "Schließe das als Duplikat von {}."],
        "fr": ["C'est suivi dans {}.", "Voir {} pour l'historique complet.",
               "Fermé comme doublon de {}."],
        "nl": ["Dit wordt bijgehouden in {}.", "Zie {} voor de volledige geschiedenis.",
               "Gesloten als duplicaat van {}."],
        "es": ["Se sigue en {}.", "Consulte {} para ver el historial completo.",
               "Cerrado como duplicado de {}."],
    },
    "INVOICE_NUMBER": {
        "en": ["Invoice {} is still unpaid.", "Please quote invoice number {} on your transfer."],
        "de": ["Rechnung Nr. {} ist noch offen.",
               "Bitte geben Sie bei der Überweisung die Rechnungsnummer {} an."],
        "fr": ["La facture n° {} reste impayée.",
               "Merci d'indiquer le numéro de facture {} lors du virement."],
        "nl": ["Factuur {} staat nog open.", "Vermeld bij de betaling factuurnummer {}."],
        "es": ["La factura {} sigue pendiente de pago.",
               "Indique el número de factura {} en la transferencia."],
    },
    "PAYMENT_REFERENCE": {
        "en": ["Please use payment reference {} so we can match the transfer.",
               "The transfer of {price} arrived with reference {}."],
        "de": ["Verwendungszweck: {}", "Die Überweisung über {price} ging mit der Referenz {} ein."],
        "fr": ["Merci d'indiquer la référence de paiement {} lors du virement.",
               "Le virement de {price} est arrivé avec la référence {}."],
        "nl": ["Vermeld betalingskenmerk {} bij de overboeking.",
               "De betaling van {price} kwam binnen met kenmerk {}."],
        "es": ["Indique la referencia de pago {} en la transferencia.",
               "La transferencia de {price} llegó con la referencia {}."],
    },
    "UUID": {
        "en": ["The tenant id is {}.", "Request {} timed out after {n2} seconds.",
               "Device {} was enrolled yesterday."],
        "de": ["Die Mandanten-ID lautet {}.", "Anfrage {} ist nach {n2} Sekunden abgebrochen.",
               "Das Gerät {} wurde gestern registriert."],
        "fr": ["L'identifiant du tenant est {}.", "La requête {} a expiré après {n2} secondes.",
               "L'appareil {} a été enregistré hier."],
        "nl": ["De tenant-id is {}.", "Verzoek {} is na {n2} seconden afgebroken.",
               "Apparaat {} is gisteren aangemeld."],
        "es": ["El identificador del inquilino es {}.", "La petición {} expiró tras {n2} segundos.",
               "El dispositivo {} se registró ayer."],
    },
    "HASH": {
        "en": ["The release notes list {} for the tarball.", "The fix landed in {}.",
               "Verify the download against {} before installing."],
        "de": ["In den Release Notes steht {} für das Archiv.", "Der Fix ist in {} enthalten.",
               "Bitte den Download vor der Installation gegen {} prüfen."],
        "fr": ["Les notes de version indiquent {} pour l'archive.", "Le correctif est arrivé dans {}.",
               "Vérifiez le téléchargement avec {} avant l'installation."],
        "nl": ["De release notes noemen {} voor het archief.", "De fix zit in {}.",
               "Controleer de download tegen {} voordat je installeert."],
        "es": ["Las notas de la versión indican {} para el archivo.", "La corrección entró en {}.",
               "Compruebe la descarga con {} antes de instalar."],
    },
    "TIMESTAMP": {
        "en": ["Last backup: {}.", "First occurrence of the error: {}.", "The export is stamped {}."],
        "de": ["Letzte Sicherung: {}.", "Erstes Auftreten des Fehlers: {}.",
               "Der Export trägt den Zeitstempel {}."],
        "fr": ["Dernière sauvegarde : {}.", "Première occurrence de l'erreur : {}.",
               "L'export est horodaté {}."],
        "nl": ["Laatste back-up: {}.", "Eerste melding van de fout: {}.",
               "De export heeft tijdstempel {}."],
        "es": ["Última copia de seguridad: {}.", "Primera aparición del error: {}.",
               "La exportación lleva la marca de tiempo {}."],
    },
    "VERSION": {
        "en": ["All nodes now run {}.", "The bug is reproducible with {}.",
               "Please upgrade to {} or later."],
        "de": ["Alle Knoten laufen jetzt mit {}.", "Der Fehler lässt sich mit {} reproduzieren.",
               "Bitte auf {} oder neuer aktualisieren."],
        "fr": ["Tous les nœuds tournent maintenant avec {}.", "Le bug se reproduit avec {}.",
               "Merci de passer à {} ou plus récent."],
        "nl": ["Alle nodes draaien nu op {}.", "De bug is te reproduceren met {}.",
               "Werk bij naar {} of nieuwer."],
        "es": ["Todos los nodos usan ya {}.", "El fallo se reproduce con {}.",
               "Actualice a {} o posterior."],
    },
    "LUHN_INVALID_CARD": CARD_TEMPLATES,
    "BAD_IBAN": IBAN_TEMPLATES,
    "PLAIN_URL": {
        "en": ["The docs are at {} if you want to read up.", "See {} for details.",
               "The service points to {} now."],
        "de": ["Die Doku liegt unter {}.", "Details siehe {}.", "Der Dienst zeigt jetzt auf {}."],
        "fr": ["La documentation est ici : {}.", "Voir {} pour les détails.",
               "Le service pointe maintenant vers {}."],
        "nl": ["De documentatie staat op {}.", "Zie {} voor details.",
               "De dienst wijst nu naar {}."],
        "es": ["La documentación está en {}.", "Consulte {} para más detalles.",
               "El servicio apunta ahora a {}."],
    },
    "PLACEHOLDER": {
        "en": ["Replace {} with your own key before you deploy.",
               "The sample config still says {} there, which is expected.",
               "In the docs the example is {} and people copy it verbatim."],
        "de": ["Ersetze {} vor dem Deployment durch deinen eigenen Schlüssel.",
               "In der Beispielkonfiguration steht dort noch {}, das ist so gewollt."],
        "fr": ["Remplacez {} par votre propre clé avant le déploiement.",
               "Dans la config d'exemple il y a encore {} à cet endroit, c'est normal."],
        "nl": ["Vervang {} door je eigen sleutel voordat je uitrolt.",
               "In de voorbeeldconfig staat daar nog {} en dat klopt."],
        "es": ["Sustituya {} por su propia clave antes de desplegar.",
               "En la configuración de ejemplo sigue poniendo {} y es correcto."],
    },
    "LOW_ENTROPY_SECRET": {
        "en": ["The test environment still has {} in its config.",
               "Note that {} is only the default for local runs.",
               "Found {} in the staging settings, harmless but confusing."],
        "de": ["In der Testumgebung steht noch {} in der Konfiguration.",
               "Hinweis: {} ist nur der Standardwert für lokale Läufe."],
        "fr": ["L'environnement de test contient encore {} dans sa configuration.",
               "Attention, {} n'est que la valeur par défaut en local."],
        "nl": ["In de testomgeving staat nog {} in de configuratie.",
               "Let op: {} is alleen de standaardwaarde voor lokaal gebruik."],
        "es": ["El entorno de pruebas aún tiene {} en la configuración.",
               "Ojo: {} es solo el valor por defecto en local."],
    },
}

VALUE = {"EMAIL": email, "PHONE": phone, "CREDIT_CARD": credit_card, "IBAN": iban,
         "IP_ADDRESS": ip_address, "US_SSN": us_ssn, "UK_NINO": uk_nino, "API_KEY": api_key,
         "PRIVATE_KEY": private_key, "URL_PASSWORD": url_password,
         "ORDER_NUMBER": order_number, "TRACKING_NUMBER": tracking_number, "TICKET_ID": ticket_id,
         "INVOICE_NUMBER": invoice_number, "PAYMENT_REFERENCE": payment_reference,
         "UUID": uuid_value, "HASH": hash_value, "TIMESTAMP": timestamp, "VERSION": version,
         "LUHN_INVALID_CARD": luhn_invalid_card, "BAD_IBAN": bad_iban, "PLAIN_URL": plain_url,
         "PLACEHOLDER": placeholder, "LOW_ENTROPY_SECRET": low_entropy_secret}

FILLER = {
    "en": ["The quote comes to {price} excluding VAT.",
           "We ordered {qty} units, about {pct} more than last quarter.",
           "The meeting moved to room {room}.",
           "The new office is at 14 Harbour Street, {place}.",
           "Delivery usually takes {n} to {n2} working days.",
           "Thanks for the quick reply, much appreciated.",
           "Let me know if you need anything else.",
           "The discount of {pct} applies to orders above {price}.",
           "Parking in the garage costs {price} per day.",
           "Attendance was {qty} people, roughly {pct} of those invited.",
           "Sorry for the delay, the last two weeks were hectic.",
           "I'll check again tomorrow morning and report back.",
           "The upload limit is {mb} MB per file.",
           "We are still waiting for the signed copy."],
    "de": ["Das Angebot beläuft sich auf {price} zzgl. MwSt.",
           "Wir haben {qty} Stück bestellt, etwa {pct} mehr als im letzten Quartal.",
           "Das Meeting findet jetzt in Raum {room} statt.",
           "Die neue Adresse lautet Hafenstraße 12, {place}.",
           "Die Lieferung dauert in der Regel {n} bis {n2} Werktage.",
           "Danke für die schnelle Rückmeldung!",
           "Melden Sie sich gern, falls noch etwas fehlt.",
           "Der Rabatt von {pct} gilt ab einem Bestellwert von {price}.",
           "Ein Tagesticket für das Parkhaus kostet {price}.",
           "Entschuldigung für die Verzögerung, die letzten Wochen waren turbulent.",
           "Ich schaue morgen früh noch einmal drauf.",
           "Pro Datei sind maximal {mb} MB erlaubt.",
           "Die unterschriebene Kopie fehlt uns noch."],
    "fr": ["Le devis s'élève à {price} HT.",
           "Nous avons commandé {qty} unités, soit environ {pct} de plus qu'au trimestre dernier.",
           "La réunion a lieu en salle {room}.",
           "Notre nouvelle adresse : 8 rue des Lilas, {place}.",
           "La livraison prend en général {n} à {n2} jours ouvrés.",
           "Merci pour votre réponse rapide.",
           "N'hésitez pas si vous avez besoin d'autre chose.",
           "La remise de {pct} s'applique dès {price} d'achat.",
           "Le parking coûte {price} par jour.",
           "Désolé pour le retard, les dernières semaines ont été chargées.",
           "Je regarde à nouveau demain matin.",
           "La taille maximale est de {mb} Mo par fichier.",
           "Nous attendons toujours l'exemplaire signé."],
    "nl": ["De offerte komt op {price} exclusief btw.",
           "We hebben {qty} stuks besteld, zo'n {pct} meer dan vorig kwartaal.",
           "De vergadering is verplaatst naar lokaal {room}.",
           "Ons nieuwe adres is Havenstraat 12, {place}.",
           "Levering duurt meestal {n} tot {n2} werkdagen.",
           "Bedankt voor de snelle reactie!",
           "Laat het weten als je nog iets nodig hebt.",
           "De korting van {pct} geldt vanaf {price}.",
           "Parkeren in de garage kost {price} per dag.",
           "Sorry voor de vertraging, het waren drukke weken.",
           "Ik kijk er morgenochtend nog even naar.",
           "Per bestand mag je maximaal {mb} MB uploaden.",
           "We wachten nog op het getekende exemplaar."],
    "es": ["El presupuesto asciende a {price} más IVA.",
           "Pedimos {qty} unidades, un {pct} más que el trimestre pasado.",
           "La reunión se ha trasladado a la sala {room}.",
           "La nueva dirección es Calle Mayor 12, {place}.",
           "La entrega suele tardar de {n} a {n2} días laborables.",
           "¡Gracias por la respuesta tan rápida!",
           "Avíseme si necesita algo más.",
           "El descuento del {pct} se aplica a partir de {price}.",
           "El aparcamiento cuesta {price} al día.",
           "Perdone el retraso, han sido semanas complicadas.",
           "Mañana por la mañana lo vuelvo a revisar.",
           "El límite de subida es de {mb} MB por archivo.",
           "Seguimos esperando la copia firmada."],
}
GREETINGS = {"en": ["Hi team,", "Hello,", "Hi all,"], "de": ["Hallo zusammen,", "Guten Tag,", "Hallo,"],
             "fr": ["Bonjour à tous,", "Bonjour,"], "nl": ["Hallo allemaal,", "Beste collega's,"],
             "es": ["Hola a todos,", "Buenos días,"]}


def sentence(rng, lang, name):
    if name == "PERSON":
        return person_sentence(rng, lang)
    return fill(rng, lang, rng.choice(PROSE[name][lang]), VALUE[name](rng, lang))


# ---------------------------------------------------------------------------------------------
# Blocks: .env, YAML, JSON, log excerpt, CSV row, e-mail signature, support ticket

# item: config keys (lower snake case; .env upper-cases them)
CONFIG_KEYS = {"EMAIL": ["admin_email", "smtp_from", "alert_recipient", "support_contact"],
               "IP_ADDRESS": ["bind_addr", "upstream_host", "trusted_proxy", "listen"],
               "PERSON": ["owner", "contact_name", "name"],
               "PHONE": ["phone", "oncall_phone", "mobile"],
               "IBAN": ["iban"], "BAD_IBAN": ["iban"],
               "CREDIT_CARD": ["card_number"], "LUHN_INVALID_CARD": ["card_number"],
               "UUID": ["tenant_id", "request_id", "instance_id"],
               "VERSION": ["version", "image_tag", "app_version"],
               "TIMESTAMP": ["created_at", "build_date", "updated_at"],
               "PLAIN_URL": ["public_url", "webhook_url", "docs_url"],
               "ORDER_NUMBER": ["order_id"], "INVOICE_NUMBER": ["invoice_number"],
               "TICKET_ID": ["ticket"], "TRACKING_NUMBER": ["tracking_number"],
               "PAYMENT_REFERENCE": ["payment_reference"]}
URL_KEYS = {"database_url": ["postgres", "postgresql", "mysql"], "redis_url": ["redis"],
            "broker_url": ["amqp"], "mongo_uri": ["mongodb", "mongodb+srv"], "smtp_url": ["smtp"]}
FITS = {
    "env": {"EMAIL", "IP_ADDRESS", "URL_PASSWORD", "API_KEY", "UUID", "VERSION", "HASH", "TIMESTAMP",
            "PLAIN_URL", "PLACEHOLDER", "LOW_ENTROPY_SECRET"},
    "yaml": {"EMAIL", "IP_ADDRESS", "URL_PASSWORD", "API_KEY", "UUID", "VERSION", "HASH",
             "TIMESTAMP", "PLAIN_URL", "PLACEHOLDER", "LOW_ENTROPY_SECRET", "PRIVATE_KEY", "PERSON",
             "PHONE"},
    "json": {"EMAIL", "IP_ADDRESS", "URL_PASSWORD", "API_KEY", "UUID", "VERSION", "HASH", "TIMESTAMP",
             "PLAIN_URL", "PLACEHOLDER", "LOW_ENTROPY_SECRET", "PRIVATE_KEY", "PERSON", "PHONE",
             "IBAN", "CREDIT_CARD", "ORDER_NUMBER", "INVOICE_NUMBER", "TRACKING_NUMBER", "BAD_IBAN",
             "LUHN_INVALID_CARD", "PAYMENT_REFERENCE", "TICKET_ID"},
    "log": {"IP_ADDRESS", "EMAIL", "UUID", "API_KEY", "URL_PASSWORD", "PLAIN_URL", "VERSION", "HASH",
            "TIMESTAMP", "PERSON", "PHONE"},
    "csv": {"PERSON", "EMAIL", "PHONE", "IBAN", "CREDIT_CARD", "ORDER_NUMBER", "INVOICE_NUMBER",
            "TIMESTAMP", "UUID", "BAD_IBAN", "LUHN_INVALID_CARD", "TRACKING_NUMBER",
            "PAYMENT_REFERENCE"},
}
CONFIG_FILLER = [("log_level", "info", False), ("port", "8080", True), ("workers", "4", True),
                 ("node_env", "production", False), ("tz", "Europe/Berlin", False),
                 ("cache_ttl", "300", True), ("feature_export", "true", True),
                 ("region", "eu-central-1", False), ("max_upload_mb", "25", True)]


def bare(segs):
    """Drop plain context around a single labelled value (for config values)."""
    return [s for s in segs if s[1] or s[2]]


def config_entry(rng, lang, name):
    """(key, value pieces, literal in JSON) for one item."""
    if name == "API_KEY":
        key, segs = api_key_entry(rng)
        return key, segs, False
    if name == "URL_PASSWORD":
        key = rng.choice(list(URL_KEYS))
        return key, url_password(rng, lang, rng.choice(URL_KEYS[key])), False
    if name == "PLACEHOLDER":
        _, value, key = rng.choice(PLACEHOLDERS)
        return key, [neg(value, "PLACEHOLDER")], False
    if name == "LOW_ENTROPY_SECRET":
        key, _, value, literal = rng.choice(LOW_ENTROPY)
        return key.lower(), [neg(value, "LOW_ENTROPY_SECRET")], literal
    if name == "HASH":
        variant, value = hash_parts(rng)
        return HASH_VARIANTS[variant][1], [neg(value, "HASH")], False
    if name == "VERSION":
        while True:
            prefix, value = version_parts(rng)
            if not looks_like_ipv4(value.lstrip("v")) or value.startswith("v"):
                break
        return rng.choice(CONFIG_KEYS[name]), [neg(value, "VERSION")], False
    if name == "TIMESTAMP":
        prefix, value = timestamp_parts(rng)
        if prefix:
            return "ts", [neg(value, "TIMESTAMP")], True
        return rng.choice(CONFIG_KEYS[name]), [neg(value, "TIMESTAMP")], False
    if name == "PERSON":
        return rng.choice(CONFIG_KEYS[name]), [pii(person(rng, lang).full, "PERSON")], False
    if name == "IP_ADDRESS":  # keeps its ":port", "[...]" or "/len"
        return rng.choice(CONFIG_KEYS[name]), ip_address(rng, lang), False
    return rng.choice(CONFIG_KEYS[name]), bare(VALUE[name](rng, lang)), False


def config_entries(rng, lang, names):
    """config_entry for each item; a repeated key gets a prefix (api_key, legacy_api_key)."""
    seen, out = Counter(), []
    for name in names:
        key, segs, literal = config_entry(rng, lang, name)
        seen[key] += 1
        if seen[key] > 1:
            key = f"{('legacy', 'backup', 'staging', 'old')[seen[key] - 2]}_{key}"
        out.append((name, key, segs, literal))
    return out


def yaml_needs_quotes(text):
    return text[:1] in "*{[&!@%`|>'\"<#" or ": " in text or " #" in text or text in ("", "~")


def env_block(rng, lang, names):
    lines = []
    for _, key, segs, _ in config_entries(rng, lang, names):
        if " " in seg_text(segs) or rng.random() < 0.15:
            segs = [plain('"'), *segs, plain('"')]
        lines.append([plain(key.upper() + "="), *segs])
    for key, value, _ in rng.sample(CONFIG_FILLER, rng.randint(1, 3)):
        lines.append([plain(f"{key.upper()}={value}")])
    rng.shuffle(lines)
    return lines


def yaml_block(rng, lang, names):
    section = rng.choice(("", "", "app:", "database:", "auth:", "smtp:", "tls:"))
    base = "  " if section else ""
    lines = [[plain(section)]] if section else []
    body = []
    if "PRIVATE_KEY" in names:
        rel = rng.choice((2, 4))
        key = rng.choice(("key", "tls_key", "private_key", "ssh_key"))
        segs = private_key(rng, lang, "yaml", len(base) + rel)
        body.append([plain(f"{base}{key}: |\n{base}{' ' * rel}"), *segs])
    for _, key, segs, _ in config_entries(rng, lang, [n for n in names if n != "PRIVATE_KEY"]):
        if yaml_needs_quotes(seg_text(segs)) or rng.random() < 0.1:
            segs = [plain('"'), *segs, plain('"')]
        body.append([plain(f"{base}{key}: "), *segs])
    for key, value, _ in rng.sample(CONFIG_FILLER, rng.randint(1, 2)):
        body.append([plain(f"{base}{key}: {value}")])
    rng.shuffle(body)
    return lines + body


def json_block(rng, lang, names):
    entries = []
    if "PRIVATE_KEY" in names:
        entries.append([plain('"type": "service_account"')])
        entries.append([plain(f'"project_id": "billing-prod-{rng.randint(1000, 9999)}"')])
    body = []
    if "PRIVATE_KEY" in names:
        body.append([plain('"private_key": "'), *private_key(rng, lang, "json"), plain('"')])
    for _, key, segs, literal in config_entries(rng, lang, [n for n in names if n != "PRIVATE_KEY"]):
        if not literal:
            segs = [plain('"'), *segs, plain('"')]
        body.append([plain(f'"{key}": '), *segs])
    for key, value, literal in rng.sample(CONFIG_FILLER, rng.randint(1, 2)):
        body.append([plain(f'"{key}": {value}' if literal else f'"{key}": "{value}"')])
    rng.shuffle(body)
    entries += body
    if rng.random() < 0.4 and "PRIVATE_KEY" not in names:
        out = [plain("{")]
        for i, entry in enumerate(entries):
            out += [plain(" " if i == 0 else ", "), *entry]
        return [out + [plain(" }")]]
    lines = [[plain("{")]]
    for i, entry in enumerate(entries):
        lines.append([plain("  "), *entry, plain("," if i < len(entries) - 1 else "")])
    return lines + [[plain("}")]]


def log_message(rng, lang, name):
    """(level, component, message pieces)"""
    if name == "IP_ADDRESS":
        return ("WARN", "auth", [plain("failed login for admin from "), *ip_address(rng, lang),
                                 plain(f" ({rng.randint(2, 9)} attempts)")])
    if name == "EMAIL":
        return "INFO", "mailer", [plain("delivered message to "), *email(rng, lang),
                                  plain(" status=sent")]
    if name == "UUID":
        return "INFO", "http", [plain("request_id="), neg(uuid_text(rng), "UUID"),
                                plain(f" status=200 duration_ms={rng.randint(3, 900)}")]
    if name == "API_KEY":
        if rng.random() < 0.5:
            value = jwt(rng) if rng.random() < 0.4 else high_entropy(rng)
            return "DEBUG", "http", [plain("> Authorization: Bearer "), pii(value, "API_KEY")]
        return "DEBUG", "client", [plain("using api key "), pii(vendor_token(rng)[1], "API_KEY")]
    if name == "URL_PASSWORD":
        scheme = rng.choice(("postgres", "mysql", "redis", "amqp", "mongodb"))
        return "ERROR", "db", [plain("could not connect to "), *url_password(rng, lang, scheme),
                               plain(": connection refused")]
    if name == "PLAIN_URL":
        return "INFO", "fetch", [plain("GET "), *plain_url(rng, lang), plain(" -> 200")]
    if name == "VERSION":
        return "INFO", "main", [plain("starting with "), *version(rng, lang)]
    if name == "HASH":
        return "INFO", "deploy", [plain("deployed "), *hash_value(rng, lang)]
    if name == "PERSON":
        return "INFO", "audit", [plain('user "'), pii(person(rng, lang).full, "PERSON"),
                                 plain('" changed the retention policy')]
    if name == "PHONE":
        return "INFO", "sms", [plain("sent verification code to "), *phone(rng, lang)]
    raise KeyError(name)


LOG_FILLER = ["scheduler: {n} jobs queued", "cache: hit ratio 0.{n2}",
              "backup: snapshot complete, {qty} files, {mb} MB", "worker: job finished in {qty} ms",
              "http: GET /healthz 200", "disk: /var/lib/strongroom at {n2} % capacity"]


def log_block(rng, lang, names):
    messages = [log_message(rng, lang, n) for n in names if n != "TIMESTAMP"]
    while len(messages) < 2 or rng.random() < 0.3:
        level = rng.choice(("INFO", "INFO", "DEBUG", "WARN"))
        component, text = expand(rng, "en", rng.choice(LOG_FILLER)).split(": ", 1)
        messages.append((level, component, [plain(text)]))
        if len(messages) >= 5:
            break
    rng.shuffle(messages)
    stamped = rng.randrange(len(messages)) if "TIMESTAMP" in names else -1
    form = rng.choice(("iso", "space", "comma"))
    t = rand_datetime(rng)
    lines = []
    for i, (level, component, segs) in enumerate(messages):
        t += datetime.timedelta(milliseconds=rng.randint(5, 90000))
        if form == "iso":
            stamp = f"{t:%Y-%m-%dT%H:%M:%S}Z"
        elif form == "space":
            stamp = f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d}+01:00"
        else:
            stamp = f"{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d}"
        stamp_seg = neg(stamp, "TIMESTAMP") if i == stamped else plain(stamp)
        lines.append([stamp_seg, plain(f" {level:<5} {component}: "), *segs])
    return lines


CSV_HEADERS = {
    "PERSON": {"en": "name", "de": "Name", "fr": "nom", "nl": "naam", "es": "nombre"},
    "EMAIL": {"en": "email", "de": "E-Mail", "fr": "courriel", "nl": "e-mail", "es": "correo"},
    "PHONE": {"en": "phone", "de": "Telefon", "fr": "téléphone", "nl": "telefoon", "es": "teléfono"},
    "IBAN": {lang: "IBAN" for lang in LANGS}, "BAD_IBAN": {lang: "IBAN" for lang in LANGS},
    "CREDIT_CARD": {"en": "card", "de": "Karte", "fr": "carte", "nl": "kaart", "es": "tarjeta"},
    "ORDER_NUMBER": {"en": "order", "de": "Bestellung", "fr": "commande", "nl": "bestelling",
                     "es": "pedido"},
    "INVOICE_NUMBER": {"en": "invoice", "de": "Rechnung", "fr": "facture", "nl": "factuur",
                       "es": "factura"},
    "TIMESTAMP": {"en": "date", "de": "Datum", "fr": "date", "nl": "datum", "es": "fecha"},
    "UUID": {lang: "customer_id" for lang in LANGS},
    "TRACKING_NUMBER": {"en": "tracking", "de": "Sendung", "fr": "suivi", "nl": "zending",
                        "es": "seguimiento"},
    "PAYMENT_REFERENCE": {"en": "reference", "de": "Referenz", "fr": "référence", "nl": "kenmerk",
                          "es": "referencia"},
    "amount": {"en": "amount", "de": "Betrag", "fr": "montant", "nl": "bedrag", "es": "importe"},
    "qty": {"en": "qty", "de": "Menge", "fr": "quantité", "nl": "aantal", "es": "cantidad"},
    "city": {"en": "city", "de": "Ort", "fr": "ville", "nl": "plaats", "es": "ciudad"},
}
CSV_HEADERS["LUHN_INVALID_CARD"] = CSV_HEADERS["CREDIT_CARD"]


def csv_block(rng, lang, names):
    delim = "," if lang == "en" or rng.random() < 0.4 else ";"
    columns = []
    for name in names:
        if name == "PERSON":
            segs = [pii(person(rng, lang).full, "PERSON")]
        elif name == "TIMESTAMP":
            segs = [neg(timestamp_parts(rng, dated_only=True)[1], "TIMESTAMP")]
        else:
            segs = bare(VALUE[name](rng, lang))
        columns.append((CSV_HEADERS[name][lang], segs))
    for extra in rng.sample(("amount", "qty", "city"), rng.randint(1, 2)):
        value = {"amount": price(rng, lang), "qty": str(rng.randint(1, 40)),
                 "city": rng.choice(PLACES[lang])}[extra]
        columns.append((CSV_HEADERS[extra][lang], [plain(value)]))
    rng.shuffle(columns)
    header = delim.join(h for h, _ in columns)
    row = []
    for i, (_, segs) in enumerate(columns):
        if i:
            row.append(plain(delim))
        if delim in seg_text(segs) or rng.random() < 0.2:
            segs = [plain('"'), *segs, plain('"')]
        row += segs
    return [[plain(header)], row]


BLOCK_INTROS = {
    "env": {"en": "Here is the .env from the staging box:", "de": "Hier die .env vom Staging-Server:",
            "fr": "Voici le .env du serveur de recette :", "nl": "Hierbij de .env van de testserver:",
            "es": "Este es el .env del servidor de pruebas:"},
    "yaml": {"en": "This is the relevant part of config.yaml:",
             "de": "Das ist der relevante Teil der config.yaml:",
             "fr": "Voici l'extrait pertinent de config.yaml :",
             "nl": "Dit is het relevante deel van config.yaml:",
             "es": "Esta es la parte relevante de config.yaml:"},
    "json": {"en": "The endpoint returned this JSON:", "de": "Der Endpunkt liefert folgendes JSON:",
             "fr": "Le point d'accès renvoie ce JSON :", "nl": "Het endpoint gaf deze JSON terug:",
             "es": "El endpoint devolvió este JSON:"},
    "log": {"en": "Log excerpt from this morning:", "de": "Auszug aus dem Log von heute Morgen:",
            "fr": "Extrait du journal de ce matin :", "nl": "Fragment uit het log van vanochtend:",
            "es": "Extracto del log de esta mañana:"},
    "csv": {"en": "Row from the CRM export:", "de": "Zeile aus dem CRM-Export:",
            "fr": "Ligne de l'export CRM :", "nl": "Regel uit de CRM-export:",
            "es": "Fila de la exportación del CRM:"},
}
BLOCKS = {"env": env_block, "yaml": yaml_block, "json": json_block, "log": log_block,
          "csv": csv_block}

CLOSINGS = {"en": ["Kind regards,", "Best regards,", "Best,", "Thanks,"],
            "de": ["Mit freundlichen Grüßen", "Viele Grüße", "Beste Grüße"],
            "fr": ["Cordialement,", "Bien à vous,", "Bonne journée,"],
            "nl": ["Met vriendelijke groet,", "Groeten,", "Hartelijke groet,"],
            "es": ["Saludos cordiales,", "Un saludo,", "Atentamente,"]}
ROLES = {"en": ["Head of Finance", "IT Operations", "Account Manager", "Customer Success",
                "Office Manager"],
         "de": ["Buchhaltung", "IT-Betrieb", "Vertrieb", "Kundenservice", "Geschäftsführung"],
         "fr": ["Service comptabilité", "Responsable informatique", "Service client", "Direction"],
         "nl": ["Financiële administratie", "IT-beheer", "Accountmanager", "Klantenservice"],
         "es": ["Departamento financiero", "Sistemas", "Atención al cliente", "Gerencia"]}
COMPANIES = {"en": [("Northbridge Analytics Ltd", "northbridge-analytics.co.uk", "14 Harbour Street"),
                    ("Harbour Freight Co.", "harbourfreight.com", "2 Dock Road")],
             "de": [("Nordwind Logistik GmbH", "nordwind-logistik.de", "Hafenstraße 12"),
                    ("Alpenblick Software AG", "alpenblick-software.de", "Bergweg 3")],
             "fr": [("Atelier Lumière SARL", "atelier-lumiere.fr", "8 rue des Lilas"),
                    ("Transports Garonne SAS", "transports-garonne.fr", "21 quai des Chartrons")],
             "nl": [("Polderlicht B.V.", "polderlicht.nl", "Havenstraat 12"),
                    ("Kanaalzicht Logistiek B.V.", "kanaalzicht-logistiek.nl", "Kade 7")],
             "es": [("Soluciones Meseta S.L.", "soluciones-meseta.es", "Calle Mayor 12"),
                    ("Transportes Guadalquivir S.A.", "transportes-guadalquivir.es",
                     "Avenida del Puerto 40")]}
PHONE_LABELS = {"en": ["Tel: ", "Mobile: ", "T: "], "de": ["Tel.: ", "Mobil: "],
                "fr": ["Tél. : ", "Portable : "], "nl": ["Tel: ", "Mobiel: "],
                "es": ["Tel.: ", "Móvil: "]}


def signature_block(rng, lang, with_phone, with_email):
    who = person(rng, lang)
    company, domain, street = rng.choice(COMPANIES[lang])
    title = rng.choice(("Dr. ", "")) if rng.random() < 0.2 else ""
    lines = [[plain(rng.choice(CLOSINGS[lang]))], [plain(title), pii(who.full, "PERSON")],
             [plain(rng.choice(ROLES[lang]))], [plain(company)]]
    if with_phone:
        lines.append([plain(rng.choice(PHONE_LABELS[lang])), *phone(rng, lang)])
    if with_email:
        lines.append([pii(email_address(rng, lang, who, domain), "EMAIL")])
    if rng.random() < 0.5:
        lines.append([plain(f"{street}, {rng.choice(PLACES[lang])}")])
    return lines


TICKET_WORDS = {
    "en": ("Subject", "From", "Priority", ["Cannot log in", "Refund request", "Invoice question",
                                           "Server down"], ["low", "normal", "high", "urgent"]),
    "de": ("Betreff", "Von", "Priorität", ["Login nicht möglich", "Erstattung", "Frage zur Rechnung",
                                           "Server nicht erreichbar"],
           ["niedrig", "normal", "hoch", "dringend"]),
    "fr": ("Objet", "De", "Priorité", ["Connexion impossible", "Demande de remboursement",
                                       "Question sur une facture", "Serveur injoignable"],
           ["basse", "normale", "haute", "urgente"]),
    "nl": ("Onderwerp", "Van", "Prioriteit", ["Kan niet inloggen", "Terugbetaling",
                                              "Vraag over factuur", "Server onbereikbaar"],
           ["laag", "normaal", "hoog", "urgent"]),
    "es": ("Asunto", "De", "Prioridad", ["No puedo iniciar sesión", "Solicitud de reembolso",
                                         "Duda sobre una factura", "Servidor caído"],
           ["baja", "normal", "alta", "urgente"]),
}


def ticket_header(rng, lang, with_person, with_email):
    subject, sender, priority, subjects, levels = TICKET_WORDS[lang]
    lines = [[plain("Ticket "), *ticket_id(rng, lang),
              plain(f" | {priority}: {rng.choice(levels)}")]]
    if with_person or with_email:
        who = person(rng, lang)
        line = [plain(f"{sender}: ")]
        if with_person:
            line.append(pii(who.full, "PERSON"))
        if with_email:
            address = email_address(rng, lang, who if with_person else None)
            line += [plain(" <"), pii(address, "EMAIL"), plain(">")] if with_person else \
                [pii(address, "EMAIL")]
        lines.append(line)
    lines.append([plain(f"{subject}: {rng.choice(subjects)}")])
    return lines


# ---------------------------------------------------------------------------------------------
# Records


def choose_items(rng):
    if rng.random() < 0.15:
        return []
    while True:
        n_kinds = rng.choices((0, 1, 2, 3, 4), weights=(18, 34, 26, 14, 8))[0]
        n_shapes = rng.choices((0, 1, 2, 3), weights=(30, 36, 22, 12))[0]
        if n_kinds or n_shapes:
            break
    kinds = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()), k=n_kinds)
    while kinds.count("PRIVATE_KEY") > 1:
        kinds.remove("PRIVATE_KEY")
    shapes = rng.choices(list(SHAPE_WEIGHTS), weights=list(SHAPE_WEIGHTS.values()), k=n_shapes)
    items = kinds + shapes
    rng.shuffle(items)
    return items


def choose_format(rng, items):
    if not items:
        return rng.choices(("prose", "log", "env"), weights=(80, 12, 8))[0]
    if "PRIVATE_KEY" in items:
        return rng.choice(("prose", "json", "yaml"))
    table = {"prose": 50}
    if "PERSON" in items:
        table["signature"] = 16
    if "TICKET_ID" in items:
        table["ticket"] = 18
    for fmt, weight in (("env", 8), ("yaml", 8), ("json", 8), ("log", 9), ("csv", 7)):
        if any(i in FITS[fmt] for i in items):
            table[fmt] = weight
    return weighted(rng, table)


def take(items, name):
    if name in items:
        items.remove(name)
        return True
    return False


def join_lines(lines):
    out = []
    for i, line in enumerate(lines):
        if i:
            out.append(plain("\n"))
        out += line
    return out


def make_record(rng):
    lang = rng.choices(LANGS, weights=LANG_WEIGHTS)[0]
    items = choose_items(rng)
    fmt = choose_format(rng, items)
    rest = list(items)
    head, block, tail = [], [], []

    if fmt in BLOCKS:
        fitting = [i for i in rest if i in FITS[fmt]]
        if fmt == "csv":
            fitting = fitting[:5]
        for name in fitting:
            rest.remove(name)
        head = [[plain(BLOCK_INTROS[fmt][lang])]]
        block = BLOCKS[fmt](rng, lang, fitting)
    elif fmt == "signature":
        take(rest, "PERSON")
        block = signature_block(rng, lang, take(rest, "PHONE"), take(rest, "EMAIL"))
    elif fmt == "ticket":
        take(rest, "TICKET_ID")
        block = ticket_header(rng, lang, take(rest, "PERSON"), take(rest, "EMAIL"))

    sentences = [sentence(rng, lang, name) for name in rest]
    fillers = rng.choices((0, 1, 2, 3), weights=(25, 40, 25, 10))[0]
    if not items:
        fillers += rng.randint(1, 2)
    for text in rng.sample(FILLER[lang], fillers):
        sentences.insert(rng.randint(0, len(sentences)), [plain(expand(rng, lang, text))])

    if fmt == "ticket":
        # the header comes first, the body follows it
        body = sentences or [[plain(expand(rng, lang, rng.choice(FILLER[lang])))]]
        lines = block + [[plain("")], joined(rng, body)]
        return join_lines(lines)
    if fmt == "signature":
        body = sentences or [[plain(expand(rng, lang, rng.choice(FILLER[lang])))]]
        greeting = [[plain(rng.choice(GREETINGS[lang]))]] if rng.random() < 0.5 else []
        return join_lines(greeting + [joined(rng, body), [plain("")]] + block)

    greeting = [[plain(rng.choice(GREETINGS[lang]))]] if rng.random() < 0.2 else []
    if block:
        cut = rng.randint(0, len(sentences))
        before, after = sentences[:cut], sentences[cut:]
        lines = greeting + ([joined(rng, before)] if before else []) + head + block
        if after:
            lines.append(joined(rng, after))
        return join_lines(lines)
    return join_lines(greeting + [joined(rng, sentences)])


def joined(rng, sentences):
    out = []
    for i, s in enumerate(sentences):
        if i:
            out.append(plain("\n" if rng.random() < 0.1 else " "))
        out += s
    return out


def assemble(record_id, segs):
    parts, spans, negatives = [], [], []
    pos = 0
    for text, kind, shape in segs:
        if kind or shape:
            assert text and text == text.strip(), (record_id, text)
            entry = {"start": pos, "end": pos + len(text)}
            if kind:
                spans.append({**entry, "kind": kind})
            else:
                negatives.append({**entry, "shape": shape})
        parts.append(text)
        pos += len(text)
    return {"id": record_id, "text": "".join(parts), "spans": spans, "negatives": negatives}


def check_templates():
    for name, by_lang in PROSE.items():
        for lang in LANGS:
            for template in by_lang[lang]:
                assert template.count("{}") == 1, (name, lang, template)
    for table in (PERSON_TEMPLATES, PERSON_CUES):
        for lang in LANGS:
            for template in table[lang]:
                assert template.count("{}") == 1, (lang, template)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--records", type=int, default=4000)
    args = parser.parse_args()
    check_templates()

    rng = random.Random(args.seed)
    kinds, shapes = Counter(), Counter()
    empty = total = 0
    out = sys.stdout.buffer
    width = max(5, len(str(args.records)))
    for i in range(1, args.records + 1):
        record = assemble(f"r{i:0{width}d}", make_record(rng))
        kinds.update(s["kind"] for s in record["spans"])
        shapes.update(n["shape"] for n in record["negatives"])
        empty += not record["spans"] and not record["negatives"]
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        total += len(line)
        out.write(line)
    out.flush()

    err = sys.stderr
    print(f"records {args.records}, bytes {total}, with neither spans nor negatives {empty}",
          file=err)
    print("kinds:", file=err)
    for kind in KINDS:
        print(f"  {kind:<20} {kinds[kind]}", file=err)
    print("shapes:", file=err)
    for shape in SHAPES:
        print(f"  {shape:<20} {shapes[shape]}", file=err)


if __name__ == "__main__":
    main()

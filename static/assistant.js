// Streams the assistant's answer into the page as it arrives. Without JavaScript the form
// posts and the server renders the whole page once the answer is stored; with it, the same
// question goes to the streaming API and the page is reloaded when the stored turn arrives.
(function () {
  "use strict";
  var form = document.getElementById("ask");
  if (!form || !window.fetch || !window.TextDecoder || !window.ReadableStream) return;
  form.addEventListener("submit", function (ev) {
    var q = form.question.value.trim();
    if (!q) return;
    ev.preventDefault();
    var live = document.getElementById("live");
    var button = form.querySelector("button");
    button.disabled = true;
    live.hidden = false;
    live.textContent = "";
    var show = function (id) {
      location.hash = id ? "turn-" + id : "";
      location.reload();
    };
    fetch("/api/v1/conversations/" + form.dataset.thread + "/stream", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": form.csrf.value },
      body: JSON.stringify({ question: q })
    }).then(function (res) {
      // Refused before anything was stored: the plain form post shows the reason.
      if (!res.ok || !res.body) { form.submit(); return; }
      var reader = res.body.getReader();
      var decoder = new TextDecoder();
      var buf = "";
      var pump = function () {
        return reader.read().then(function (r) {
          if (r.done) { show(null); return; }
          buf += decoder.decode(r.value, { stream: true });
          var at;
          while ((at = buf.indexOf("\n\n")) >= 0) {
            var block = buf.slice(0, at);
            buf = buf.slice(at + 2);
            var event = "message", data = "";
            block.split("\n").forEach(function (line) {
              if (line.indexOf("event:") === 0) event = line.slice(6).trim();
              else if (line.indexOf("data:") === 0) data += line.slice(5).trim();
            });
            if (event === "delta") live.textContent += JSON.parse(data).text;
            else if (event === "turn") { show(JSON.parse(data).id); return; }
            else if (event === "error") { show(null); return; }
          }
          return pump();
        });
      };
      return pump();
    }).catch(function () { form.submit(); });
  });
})();

// Progressive enhancement of the spawn-pending page: follow the server's progress stream
// instead of reloading the page, and go to the server as soon as it is ready. Without
// JavaScript the page refreshes itself (a <noscript> meta refresh) and works the same.
(function () {
  "use strict";
  var root = document.getElementById("spawn-progress");
  if (!root || !window.EventSource) {
    return;
  }
  var bar = document.getElementById("progress-bar");
  var log = document.getElementById("progress-log");
  var status = document.getElementById("progress-status");
  var failed = document.getElementById("spawn-failed");
  var failedMessage = document.getElementById("spawn-failed-message");
  var readyUrl = root.getAttribute("data-ready-url");
  // Events already rendered by the server; the stream replays them first.
  var rendered = log ? log.children.length : 0;
  var seen = 0;
  var source = new EventSource(root.getAttribute("data-progress-url"));

  source.onmessage = function (msg) {
    var ev;
    try {
      ev = JSON.parse(msg.data);
    } catch (e) {
      return;
    }
    seen += 1;
    if (typeof ev.progress === "number" && bar) {
      bar.value = ev.progress;
      bar.textContent = ev.progress + "%";
    }
    if (seen > rendered && ev.message && log) {
      var li = document.createElement("li");
      li.textContent = ev.message;
      log.appendChild(li);
    }
    if (ev.ready) {
      source.close();
      if (status) {
        status.textContent = "Your server is ready. Opening it…";
      }
      window.location.assign(readyUrl || ev.url);
    } else if (ev.failed) {
      source.close();
      if (status) {
        status.textContent = "Your server failed to start.";
      }
      if (failed && failedMessage) {
        failedMessage.textContent = ev.message || "The spawn failed.";
        failed.hidden = false;
      }
    }
  };

  source.onerror = function () {
    // The stream ended or broke: fall back to what the server renders.
    source.close();
    window.setTimeout(function () {
      window.location.reload();
    }, 2000);
  };
})();

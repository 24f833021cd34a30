// nidan pages work without JavaScript; this only adds the Print and Copy buttons of the pages that show a secret once
// (recovery codes: a list, one code a line; a new token or API key: one element), and counts down to when a person
// told to wait may try again (the button stays disabled until then).
// Loaded from /static (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  var COPY_FAILED = "Could not copy: select the text and copy it.";

  function textOf(listId) {
    var list = document.getElementById(listId);
    if (!list) {
      return "";
    }
    if (list.tagName !== "OL" && list.tagName !== "UL") {
      return list.textContent.trim();
    }
    var codes = [];
    list.querySelectorAll("li").forEach(function (item) {
      codes.push(item.textContent.trim());
    });
    return codes.join("\n") + "\n";
  }

  function say(button, message) {
    var status = button.parentNode.querySelector(".copy-status");
    if (status) {
      status.textContent = message;
    }
  }

  function copyFallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    document.body.removeChild(area);
    return ok;
  }

  function copy(button) {
    var text = textOf(button.getAttribute("data-copy-from"));
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { say(button, "Copied."); },
        function () { say(button, copyFallback(text) ? "Copied." : COPY_FAILED); }
      );
    } else {
      say(button, copyFallback(text) ? "Copied." : COPY_FAILED);
    }
  }

  function waitingSentence(seconds) {
    return "You can try again in " + seconds + (seconds === 1 ? " second." : " seconds.");
  }

  function countDown(note) {
    var button = document.getElementById(note.getAttribute("data-countdown-for"));
    var left = parseInt(note.getAttribute("data-seconds"), 10);
    if (!button || !(left > 0)) {
      return;
    }
    var until = Date.now() + left * 1000;
    button.disabled = true;
    function tick() {
      left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) {
        button.disabled = false;
        note.textContent = "You can try again now.";
        return;
      }
      note.textContent = waitingSentence(left);
      setTimeout(tick, 250);
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-countdown-for]").forEach(countDown);
    document.querySelectorAll("button[data-action]").forEach(function (button) {
      var action = button.getAttribute("data-action");
      button.hidden = false;
      button.addEventListener("click", function () {
        if (action === "print") {
          window.print();
        } else if (action === "copy") {
          copy(button);
        }
      });
    });
  });
})();

// nidan pages work without JavaScript; this only adds the Print and Copy buttons of the pages that show a secret once
// (recovery codes: a list, one code a line; a new token or API key: one element), and counts down to when a person
// told to wait may try again (the button stays disabled until then).
// Loaded from /static (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  // Every sentence comes from the page (data-* on <body>), in the page's language.
  function said(name, seconds) {
    var text = document.body.getAttribute("data-" + name) || "";
    return seconds === undefined ? text : text.replace("{n}", String(seconds));
  }

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
        function () { say(button, said("copied")); },
        function () { say(button, copyFallback(text) ? said("copied") : said("copy-failed")); }
      );
    } else {
      say(button, copyFallback(text) ? said("copied") : said("copy-failed"));
    }
  }

  function waitingSentence(seconds) {
    return said(seconds === 1 ? "try-again-in-one" : "try-again-in-many", seconds);
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
        note.textContent = said("try-again-now");
        return;
      }
      note.textContent = waitingSentence(left);
      setTimeout(tick, 250);
    }
    tick();
  }

  // The browser's own time zone, for pages to show times in it until the person chooses one (zone names are
  // letters, digits and "/_+-": safe in a cookie as they are).
  function rememberZone() {
    try {
      var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone && /^[A-Za-z0-9\/_+\-]{1,64}$/.test(zone) && document.cookie.indexOf("nidan_tz=" + zone) < 0) {
        document.cookie = "nidan_tz=" + zone + "; path=/; max-age=31536000; samesite=lax" +
          (window.location.protocol === "https:" ? "; secure" : "");
      }
    } catch (e) {
      // No Intl: times stay in UTC, named as such.
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    rememberZone();
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

// nidan pages work without JavaScript; this only adds the Print and Copy buttons of the recovery-codes page.
// Loaded from /static (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  function textOf(listId) {
    var list = document.getElementById(listId);
    if (!list) {
      return "";
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
        function () { say(button, copyFallback(text) ? "Copied." : "Could not copy: select the codes and copy them."); }
      );
    } else {
      say(button, copyFallback(text) ? "Copied." : "Could not copy: select the codes and copy them.");
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
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

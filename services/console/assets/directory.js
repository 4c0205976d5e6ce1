// Roster console, directory services page (issue 15): the custom filter
// checked as it is typed (by the parser the sync uses), the confirmation
// before enabling one directory disables the other (D1), and Sync Now's
// live progress. No inline script (CSP); without script the page still
// works: the server checks the filter on save, asks for the confirmation
// box to be ticked, and offers a Refresh link for the progress.
(function () {
  "use strict";

  function filterChecks() {
    var inputs = document.querySelectorAll("input[data-filter-check]");
    Array.prototype.forEach.call(inputs, function (input) {
      var status = document.getElementById(input.id + "-status");
      var timer = null;
      var asked = 0;
      function check() {
        var n = ++asked;
        var url = input.getAttribute("data-filter-check") +
          "?filter=" + encodeURIComponent(input.value);
        fetch(url, { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (c) {
            if (!c || n !== asked || !status) return;
            status.textContent = c.message;
            status.className = c.ok ? "help ok" : "help warn";
            if (c.ok) {
              input.removeAttribute("aria-invalid");
            } else {
              input.setAttribute("aria-invalid", "true");
            }
          })
          .catch(function () {});
      }
      input.addEventListener("input", function () {
        if (timer) clearTimeout(timer);
        timer = setTimeout(check, 250);
      });
      if (input.value) check();
    });
  }

  // D1: Save with "Enable" ticked while the other directory is enabled
  // asks first; agreeing ticks the confirmation box that goes with the form.
  function switchConfirmation() {
    var form = document.getElementById("settings-form");
    if (!form) return;
    form.addEventListener("submit", function (e) {
      var message = form.getAttribute("data-switch");
      var button = e.submitter;
      if (!message || !button || button.value !== "save") return;
      var enabled = document.getElementById("enabled");
      var confirmBox = document.getElementById("confirm_switch");
      if (!enabled || !enabled.checked || !confirmBox || confirmBox.checked) return;
      if (window.confirm(message)) {
        confirmBox.checked = true;
      } else {
        e.preventDefault();
      }
    });
  }

  function progress() {
    var box = document.getElementById("sync-progress");
    if (!box || box.getAttribute("data-running") !== "1") return;
    var bar = document.getElementById("sync-bar");
    var text = document.getElementById("sync-text");
    var refresh = document.getElementById("sync-refresh");
    if (refresh) refresh.hidden = true;
    function poll() {
      fetch(box.getAttribute("data-progress"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (p) {
          if (!p) { setTimeout(poll, 2000); return; }
          bar.max = p.max;
          bar.value = p.value;
          text.textContent = p.text;
          if (p.running) {
            setTimeout(poll, 1000);
          } else {
            box.setAttribute("data-running", "0");
            box.setAttribute("data-status", p.status);
            text.className = p.ok ? "" : "warn";
            // A failed run: the page shows the step and what to check.
            if (p.status === "failed") window.location.reload();
          }
        })
        .catch(function () { setTimeout(poll, 2000); });
    }
    setTimeout(poll, 500);
  }

  filterChecks();
  switchConfirmation();
  progress();
})();

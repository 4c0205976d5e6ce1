// Roster console, import page: drag and drop a CSV file onto the drop zone,
// and save a reviewed import with live progress. No inline script (CSP).
(function () {
  "use strict";

  function dropzone() {
    var zone = document.getElementById("dropzone");
    if (!zone) return;
    var input = document.getElementById(zone.getAttribute("data-input"));
    var shown = document.getElementById("dropped");
    function show(files) {
      if (shown && files && files.length) {
        shown.textContent = "Selected: " + files[0].name + " (" + files[0].size + " bytes)";
      }
    }
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (e) {
        e.preventDefault();
        zone.classList.add("over");
      });
    });
    zone.addEventListener("dragleave", function () {
      zone.classList.remove("over");
    });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      zone.classList.remove("over");
      var files = e.dataTransfer && e.dataTransfer.files;
      if (!files || !files.length) return;
      input.files = files;
      show(files);
    });
    input.addEventListener("change", function () {
      show(input.files);
    });
  }

  function commit() {
    var form = document.getElementById("commit-form");
    if (!form) return;
    var bar = document.getElementById("progress");
    var text = document.getElementById("progress-text");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      bar.hidden = false;
      text.textContent = "Saving…";
      var done = false;
      function poll() {
        if (done) return;
        fetch(form.getAttribute("data-progress"), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (p) {
            if (p && !done) {
              bar.max = Math.max(p.chunks, 1);
              bar.value = p.committed_chunks;
              text.textContent = "Saved " + p.committed_chunks + " of " + p.chunks + " parts";
            }
            if (!done) setTimeout(poll, 500);
          })
          .catch(function () { if (!done) setTimeout(poll, 1000); });
      }
      poll();
      var body = new URLSearchParams(new FormData(form));
      // The redirect is not followed here: following it would show (and so
      // use up) the "Import saved" message in this request instead of on the
      // page the browser goes to next.
      fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        redirect: "manual",
        headers: { "X-CSRF-Token": body.get("_csrf") || "" },
        body: body
      }).then(function (r) {
        done = true;
        if (r.type === "opaqueredirect" || (r.status >= 300 && r.status < 400)) {
          window.location.assign(form.getAttribute("data-done"));
          return;
        }
        // Not saved: the answer is the review page with what to fix.
        return r.text().then(function (html) {
          document.open();
          document.write(html);
          document.close();
        });
      }).catch(function () {
        done = true;
        text.textContent = "The connection was lost while saving: reload the page to see how far it got.";
        button.disabled = false;
      });
    });
  }

  dropzone();
  commit();
})();

// Slipway's small behaviours: confirmations before grave actions, one submission per form, and
// live (htmx-polled) areas that keep open logs open and say when updates stop arriving.
(function () {
  "use strict";

  // <form data-confirm="what happens"> asks in the page's <dialog id="confirm"> before submitting.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    const dialog = document.getElementById("confirm");
    if (!form.matches("form[data-confirm]") || form.dataset.confirmed || !dialog || !dialog.showModal) {
      return;
    }
    event.preventDefault();
    dialog.querySelector("[data-confirm-text]").textContent = form.dataset.confirm;
    dialog.returnValue = "";
    dialog.addEventListener("close", function () {
      if (dialog.returnValue === "confirm") {
        form.dataset.confirmed = "yes";
        form.requestSubmit();
      }
    }, { once: true });
    dialog.showModal();
  });

  // A form goes once: a second click while the first is on its way does nothing.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (event.defaultPrevented || form.method === "dialog" || form.method === "get") {
      return;
    }
    if (form.dataset.sent) {
      event.preventDefault();
      return;
    }
    form.dataset.sent = "yes";
    form.setAttribute("aria-busy", "true");
  });
  window.addEventListener("pageshow", function (event) {  // back to a page kept in the browser's cache
    if (event.persisted) {
      document.querySelectorAll("form[data-sent]").forEach(function (form) {
        delete form.dataset.sent;
        delete form.dataset.confirmed;
        form.removeAttribute("aria-busy");
      });
    }
  });

  // Live areas are replaced every few seconds: keep the logs a person opened open.
  let openLogs = [];
  document.addEventListener("htmx:beforeSwap", function () {
    openLogs = Array.from(document.querySelectorAll("details[open][id]"), function (d) { return d.id; });
  });
  document.addEventListener("htmx:afterSettle", function () {
    openLogs.forEach(function (id) {
      const details = document.getElementById(id);
      if (details) { details.open = true; }
    });
  });

  // Say so when live updates fail, and when they resume.
  function liveNote(event, text, failed) {
    const note = event.target.querySelector("[data-live-status]");
    if (note) {
      note.textContent = text;
      note.classList.toggle("live-failed", failed);
    }
  }
  document.addEventListener("htmx:sendError", function (event) {
    liveNote(event, "live updates paused: the server did not answer at " + new Date().toLocaleTimeString() +
      "; retrying", true);
  });
  document.addEventListener("htmx:responseError", function (event) {
    liveNote(event, "live updates paused: the server answered " + event.detail.xhr.status + " at " +
      new Date().toLocaleTimeString() + "; retrying", true);
  });
})();

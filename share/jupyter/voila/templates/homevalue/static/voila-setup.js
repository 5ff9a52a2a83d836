/*
 * What Voilà's lab template (0.5) writes into every page as inline scripts, as a file:
 * the page's Content-Security-Policy (voila.json) runs no inline script. Loaded in <head>
 * by index.html.j2, before the cells and before voila.js.
 *
 *  - log.macro.html.j2: console messages are also posted to the window above, for the
 *    log panel of JupyterLab's Voilà preview (postMessage without a target origin only
 *    reaches the same origin). Only in a frame: a page on its own keeps the browser's
 *    console as it is;
 *  - voila_setup.macro.html.j2, voila_setup_helper_functions(): the functions the page and
 *    Voilà's frontend call (the heartbeat, the loading text, showing the cells). The loading
 *    text is set as text, not HTML.
 */
(function () {
  "use strict";

  /* ------------------------------------------------------------------ log forwarding */

  function post(payload) {
    try {
      window.top.postMessage(payload);
    } catch (err) {
      window.top.postMessage({
        level: "debug",
        msg: [
          "[Voilà]:",
          "Issue cloning object when posting log message, JSON stringify version is:",
          JSON.stringify(payload),
        ],
      });
    }
  }

  if (window.top !== window) {
    ["debug", "info", "warn", "error"].forEach(function (level) {
      var original = console[level];
      console[level] = function () {
        var args = Array.prototype.slice.call(arguments);
        post({ level: level, msg: ["[Voilà]:"].concat(args) });
        original.apply(console, args);
      };
    });
  }

  /* ------------------------------------------------------------------ helper functions */

  // Called by the heartbeat Voilà's handler sends while a slow cell runs (an inline script
  // allowed by its hash in the policy).
  window.voila_heartbeat = function () {
    console.log("Ok, voila is still executing...");
  };

  window.update_loading_text = function (cellIndex, cellCount, text) {
    var spinner = document.getElementById("loading");
    if (spinner && spinner.style.display === "none") {
      spinner.style.display = "flex";
    }
    var el = document.getElementById("loading_text");
    if (el) {
      el.textContent = text === undefined || text === null
        ? "Executing " + cellIndex + " of " + cellCount
        : text;
    }
  };

  // Shows the cells once they have all arrived and the theme is loaded (Voilà's theme
  // plugin sets window.themeLoaded and calls voila_finish() again if the cells came first).
  window.display_cells = function () {
    if (!window.themeLoaded) {
      window.cellLoaded = true;
      return;
    }
    var el = document.getElementById("loading");
    if (el) {
      el.parentNode.removeChild(el);
    }
    el = document.getElementById("rendered_cells");
    if (el) {
      el.style.display = "";
    }
  };

  window.voila_process = (window.hv && window.hv.loadingProgress) || window.update_loading_text;
  window.voila_finish = window.display_cells;
})();

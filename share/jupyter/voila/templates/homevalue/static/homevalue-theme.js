/*
 * homevalue: the theme a viewer asked for. The first element of <body> on every page (a
 * file, not an inline script: the Content-Security-Policy in voila.json runs no inline
 * script), so the page is drawn in its theme from the start.
 *
 * The server renders every page in its own theme (voila.json "theme", `voila --theme=...`)
 * and never reads ?theme= ("allow_theme_override": "NO"): a page rendered ahead for the
 * preheated pool and one rendered for the request are the same, and nothing from the query
 * is written into the page. A viewer's ?theme=light or ?theme=dark is applied here, from
 * what the page already holds: both theme stylesheets (<link data-hv-theme>, the inactive
 * one with media="not all"). Any other value is ignored: the page keeps the server's theme.
 * Links to the other pages carry the viewer's choice on.
 */
(function () {
  "use strict";

  var THEMES = {
    light: { name: "JupyterLab Light", light: "true" },
    dark: { name: "JupyterLab Dark", light: "false" },
  };

  function known(theme) {
    return theme === "light" || theme === "dark";
  }

  var body = document.body;
  var chosen = new URLSearchParams(window.location.search).get("theme");
  if (!known(chosen)) {
    return; // no choice, or not a theme we ship: the server's theme stays
  }

  function apply(theme) {
    var links = document.querySelectorAll("link[data-hv-theme]");
    for (var i = 0; i < links.length; i++) {
      links[i].media = links[i].getAttribute("data-hv-theme") === theme ? "all" : "not all";
    }
    Object.keys(THEMES).forEach(function (name) {
      body.classList.toggle("theme-" + name, name === theme);
    });
    body.setAttribute("data-jp-theme-light", THEMES[theme].light);
    body.setAttribute("data-jp-theme-name", THEMES[theme].name);
  }

  // A link to one of the server's pages (a page or a folder listing) keeps the theme.
  function carryTheme(theme) {
    var base = body.getAttribute("data-base-url") || "/voila/";
    var links = document.querySelectorAll("a[href]");
    for (var i = 0; i < links.length; i++) {
      var url = new URL(links[i].href, window.location.href);
      var path = url.pathname;
      var ours = path.indexOf(base + "render/") === 0 || path.indexOf(base + "tree") === 0;
      if (url.origin === window.location.origin && ours && links[i].getAttribute("href")) {
        url.searchParams.set("theme", theme);
        links[i].href = url.href;
      }
    }
  }

  apply(chosen);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      carryTheme(chosen);
    });
  } else {
    carryTheme(chosen);
  }
})();

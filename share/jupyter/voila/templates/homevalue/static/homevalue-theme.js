/*
 * homevalue: the theme a viewer asked for. Loaded in <head> right after the two theme
 * stylesheets, on every page (a file, not an inline script: the Content-Security-Policy in
 * voila.json runs no inline script), so nothing is drawn in the wrong theme.
 *
 * The server renders every page in its own theme (voila.json "theme", `voila --theme=...`)
 * and never reads ?theme= ("allow_theme_override": "NO"): a page rendered ahead for the
 * preheated pool and one rendered for the request are the same, and nothing from the query
 * is written into the page. A viewer's ?theme=light or ?theme=dark is applied here, from
 * what the page already holds: both theme stylesheets (<link data-hv-theme>, the inactive
 * one with media="not all") and the <body> attributes JupyterLab's CSS and the widgets
 * read. Any other value is ignored: the page keeps the server's theme.
 * Links to the other pages carry the viewer's choice on.
 */
(function () {
  "use strict";

  var THEMES = {
    light: { name: "JupyterLab Light", light: "true" },
    dark: { name: "JupyterLab Dark", light: "false" },
  };
  var SHOW_ANYWAY_MS = 3000; // if the stylesheet never says it loaded

  var chosen = new URLSearchParams(window.location.search).get("theme");
  if (chosen !== "light" && chosen !== "dark") {
    return; // no choice, or not a theme we ship: the server's theme stays
  }

  // The chosen theme's stylesheet on, the other off. One that has not arrived yet (it was
  // fetched at low priority while off) keeps the page hidden until it has, rather than
  // showing it unstyled, over a blank canvas of the theme's colour scheme.
  function switchStylesheets(theme) {
    var links = document.querySelectorAll("link[data-hv-theme]");
    for (var i = 0; i < links.length; i++) {
      var link = links[i];
      var on = link.getAttribute("data-hv-theme") === theme;
      link.media = on ? "all" : "not all";
      if (on && !link.sheet) {
        hideUntilLoaded(link, theme);
      }
    }
  }

  function hideUntilLoaded(link, theme) {
    var root = document.documentElement;
    root.style.visibility = "hidden";
    root.style.colorScheme = theme;
    var timer = setTimeout(show, SHOW_ANYWAY_MS);
    function show() {
      clearTimeout(timer);
      root.style.visibility = "";
      root.style.colorScheme = "";
    }
    link.addEventListener("load", show);
    link.addEventListener("error", show);
  }

  function styleBody(body, theme) {
    Object.keys(THEMES).forEach(function (name) {
      body.classList.toggle("theme-" + name, name === theme);
    });
    body.setAttribute("data-jp-theme-light", THEMES[theme].light);
    body.setAttribute("data-jp-theme-name", THEMES[theme].name);
  }

  // <body> does not exist yet: style it as soon as the parser adds it (mutation callbacks
  // run before the browser next draws).
  function whenBodyExists(callback) {
    if (document.body) {
      callback(document.body);
      return;
    }
    var observer = new MutationObserver(function () {
      if (document.body) {
        observer.disconnect();
        callback(document.body);
      }
    });
    observer.observe(document.documentElement, { childList: true });
  }

  // A link to one of the server's pages (a page or a folder listing) keeps the theme.
  function carryTheme(theme) {
    var base = document.body.getAttribute("data-base-url") || "/voila/";
    var links = document.querySelectorAll("a[href]");
    for (var i = 0; i < links.length; i++) {
      if (!links[i].getAttribute("href")) {
        continue; // href="": this page again (a reload keeps the query anyway)
      }
      var url = new URL(links[i].href, window.location.href);
      var path = url.pathname;
      var ours = path.indexOf(base + "render/") === 0 || path.indexOf(base + "tree") === 0;
      if (url.origin === window.location.origin && ours) {
        url.searchParams.set("theme", theme);
        links[i].href = url.href;
      }
    }
  }

  switchStylesheets(chosen);
  whenBodyExists(function (body) {
    styleBody(body, chosen);
  });
  document.addEventListener("DOMContentLoaded", function () {
    carryTheme(chosen);
  });
})();

/*
 * homevalue template, browser side. Loaded in <head> of every page (index.html.j2), before
 * Voilà's own voila.js. It replaces no browser global and patches no prototype: it listens
 * to the document and to what Voilà's frontend exposes (window.jupyterapp, its widget
 * manager and that manager's kernel connection).
 *
 *  1. loading indicator: step counter while Voilà streams the executed cells;
 *  2. footer: "model <version>" once the page renders [data-hv-model-version];
 *  3. upload guard: on a page that renders [data-hv-upload-limit-bytes], a chosen file
 *     that is too big or not a .csv never reaches the widget (nor the websocket);
 *  4. connection lost: a notice when the page's kernel connection is lost or its kernel dies;
 *  5. leaving: make sure Voilà's "shut my kernel down" beacon will be accepted;
 *  6. address: the price page's house is kept in the browser's address as it changes.
 * Unnumbered: accessibility (the price's live region), map legends (fold on a phone; a
 * press on a map does not scroll the page), downloads, printing.
 */
(function () {
  "use strict";

  var hv = (window.hv = window.hv || {});

  function onReady(fn) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", fn);
    } else {
      fn();
    }
  }

  /* ------------------------------------------------------------------ 1. loading */

  hv.loadingProgress = function (cellIndex, cellCount) {
    var step = document.getElementById("hv-loading-step");
    if (step) {
      step.textContent = "Preparing the page: step " + cellIndex + " of " + cellCount;
    }
  };

  // Voilà's lab template reports each cell with an inline <script>voila_process(i, n)</script>,
  // which the page's Content-Security-Policy does not run; index.html.j2 leaves it out and
  // the cells' wrappers (<div cell-index="i">) are counted here as the page streams in.
  var cellWatcher = new MutationObserver(function (mutations) {
    var loading = document.getElementById("loading");
    var count = loading && loading.getAttribute("data-hv-cell-count");
    if (!count) {
      return;
    }
    mutations.forEach(function (mutation) {
      mutation.addedNodes.forEach(function (node) {
        var index = node.nodeType === 1 && node.getAttribute("cell-index");
        if (index) {
          hv.loadingProgress(Number(index), Number(count));
        }
      });
    });
  });
  cellWatcher.observe(document.documentElement, { childList: true, subtree: true });
  onReady(function () {
    cellWatcher.disconnect(); // every cell has arrived
  });

  // If the page is still loading after a while, say what to do rather than spin forever.
  onReady(function () {
    setTimeout(function () {
      var text = document.getElementById("loading_text");
      if (text && document.getElementById("loading")) {
        text.textContent = "Still starting… if nothing happens, reload the page.";
      }
    }, 30000);
  });

  /* ------------------------------------------------------------------ 2. footer */

  function showModelVersion() {
    var slot = document.querySelector("[data-hv-footer-model]");
    var source = document.querySelector("[data-hv-model-version]");
    if (!slot || !source) {
      return false;
    }
    var version = (source.getAttribute("data-hv-model-version") || "").trim();
    if (!version) {
      return false;
    }
    slot.textContent = "model " + version;
    slot.hidden = false;
    return true;
  }

  onReady(function () {
    if (!document.querySelector("[data-hv-footer-model]") || showModelVersion()) {
      return;
    }
    // Widgets render after the page loads: watch the DOM until the version appears.
    var observer = new MutationObserver(function () {
      if (showModelVersion()) {
        observer.disconnect();
      }
    });
    observer.observe(document.body, {
      childList: true,
      subtree: true,
      attributes: true,
      attributeFilter: ["data-hv-model-version"],
    });
  });

  /* ------------------------------------------------------------ accessibility (a11y) */

  // ipywidgets cannot set ARIA attributes from Python. A widget given the class `hv-live`
  // (homevalue.ui.page.live_region) is a polite live region: its own element, which keeps
  // living while its text changes, gets role="status", so a screen reader announces each
  // new text once (the kernel debounces it: only the price a change settled on).
  function markLiveRegion(element) {
    if (element.matches && element.matches(".hv-live:not([role])")) {
      element.setAttribute("role", "status");
      element.setAttribute("aria-live", "polite");
      element.setAttribute("aria-atomic", "true");
    }
  }

  function markLiveRegions(root) {
    Array.prototype.forEach.call(root.querySelectorAll(".hv-live:not([role])"), markLiveRegion);
  }

  onReady(function () {
    markLiveRegions(document);
    // A widget's classes may be set after its element is attached: watch both.
    new MutationObserver(function (mutations) {
      mutations.forEach(function (mutation) {
        if (mutation.type === "attributes") {
          markLiveRegion(mutation.target);
        }
        Array.prototype.forEach.call(mutation.addedNodes, function (added) {
          if (added.nodeType === 1) {
            markLiveRegion(added);
            markLiveRegions(added);
          }
        });
      });
    }).observe(document.body, {
      childList: true,
      subtree: true,
      attributes: true,
      attributeFilter: ["class"],
    });
  });

  /* ------------------------------------------------------------------ 3. upload guard */

  var MB = 1024 * 1024;

  function uploadLimitBytes() {
    var el = document.querySelector("[data-hv-upload-limit-bytes]");
    if (!el) {
      return null;
    }
    var limit = Number(el.getAttribute("data-hv-upload-limit-bytes"));
    return isFinite(limit) && limit > 0 ? limit : null;
  }

  function megabytes(bytes) {
    var value = bytes / MB;
    return (value >= 10 || value === Math.round(value) ? Math.round(value) : value.toFixed(1)) + " MB";
  }

  // Why the chosen files are refused, or null when they may go through.
  hv.uploadProblem = function (files, limit) {
    var total = 0;
    for (var i = 0; i < files.length; i++) {
      var file = files[i];
      if (!/\.csv$/i.test(file.name)) {
        return (
          "“" + file.name + "” is not a CSV file. Choose a .csv file " +
          "(from a spreadsheet: File › Save as › CSV)."
        );
      }
      if (file.size > limit) {
        return (
          "“" + file.name + "” is " + megabytes(file.size) + "; the limit is " +
          megabytes(limit) + ". Split it into smaller files and upload them one at a time."
        );
      }
      total += file.size;
    }
    if (total > limit) {
      return (
        "These " + files.length + " files come to " + megabytes(total) + "; the limit is " +
        megabytes(limit) + " in one upload. Upload fewer at a time."
      );
    }
    return null;
  };

  var lastUploadControl = null; // the upload button (or input) the viewer last clicked
  document.addEventListener(
    "click",
    function (event) {
      var target = event.target;
      if (target && target.closest) {
        lastUploadControl = target.closest(".widget-upload, input[type=file]") || lastUploadControl;
      }
    },
    true
  );

  function clearUploadMessages() {
    var old = document.querySelectorAll(".hv-upload-error");
    for (var i = 0; i < old.length; i++) {
      old[i].remove();
    }
  }

  function showUploadMessage(input, text) {
    var box = document.createElement("div");
    box.className = "hv-field-error hv-upload-error";
    box.setAttribute("role", "alert");
    box.textContent = text; // file names come from the viewer: text, never HTML
    var anchor = input.isConnected ? input : lastUploadControl;
    if (anchor && anchor.isConnected) {
      anchor.insertAdjacentElement("afterend", box);
    } else {
      box.className += " hv-notice hv-toast";
      document.body.appendChild(box);
    }
  }

  function guardFileChange(event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file" || event.hvChecked) {
      return;
    }
    event.hvChecked = true; // the same event may reach the document and the element hooks
    var limit = uploadLimitBytes();
    if (limit === null || !input.files || input.files.length === 0) {
      return;
    }
    clearUploadMessages();
    var problem = hv.uploadProblem(input.files, limit);
    if (!problem) {
      return;
    }
    // Stop here: the widget's own change listener never runs, so nothing is read or sent.
    event.stopImmediatePropagation();
    event.preventDefault();
    try {
      input.value = "";
    } catch (err) {
      /* some browsers refuse to reset a file input: the widget never saw it anyway */
    }
    showUploadMessage(input, problem);
  }

  // A file input that is part of the page: the capture phase at the document runs first.
  document.addEventListener("change", guardFileChange, true);

  // ipywidgets' FileUpload (@jupyter-widgets/controls, widget_upload.ts: FileUploadView)
  // keeps its <input type=file> out of the document: its button's click calls
  // fileInput.click(), and the input's own 'change' listener reads every chosen file
  // (FileReader) into the model, which sends it over the websocket. That change event
  // reaches no document listener, so the guard goes on the input itself, in the capture
  // phase, which at the target runs before the widget's own listener. The input is reached
  // through Voilà's widget manager: the page names the upload's model
  // ([data-hv-upload-model]), the manager gives the model (get_model), the model its views
  // (model.views), each view its fileInput. Done when the button is clicked (capture phase,
  // before the widget's own click handler opens the chooser): the views are resolved long
  // before the viewer has picked a file.
  var guardedInputs = new WeakSet();
  function guardInput(input) {
    if (input instanceof HTMLInputElement && input.type === "file" && !guardedInputs.has(input)) {
      guardedInputs.add(input);
      input.addEventListener("change", guardFileChange, true);
    }
  }

  function guardUploadViews() {
    var named = document.querySelector("[data-hv-upload-model]");
    var manager = window.jupyterapp && window.jupyterapp.widgetManager;
    if (!named || !manager || typeof manager.get_model !== "function") {
      return;
    }
    Promise.resolve(manager.get_model(named.getAttribute("data-hv-upload-model")))
      .then(function (model) {
        var views = (model && model.views) || {};
        Object.keys(views).forEach(function (key) {
          Promise.resolve(views[key]).then(function (view) {
            guardInput(view && view.fileInput);
          });
        });
      })
      .catch(function (err) {
        console.warn("homevalue: the upload guard could not find the upload widget", err);
      });
  }

  document.addEventListener(
    "click",
    function (event) {
      if (event.target && event.target.closest && event.target.closest(".widget-upload")) {
        guardUploadViews();
      }
    },
    true
  );

  /* ------------------------------------------------------------------ map legends */

  // On a phone a map's legend is folded to its title (homevalue.css) so it covers no map;
  // a tap on the title unfolds or folds it. Caught before Leaflet sees it, so the tap does
  // not also place the house under the legend.
  document.addEventListener(
    "click",
    function (event) {
      var title = event.target.closest && event.target.closest("div.leaflet-control-legend > h4");
      if (!title) {
        return;
      }
      event.stopPropagation();
      title.parentElement.classList.toggle("hv-legend-open");
    },
    true
  );

  // A press on a map makes Leaflet focus the map (for its arrow keys) and then restore the
  // window's scroll; this template scrolls inside a panel instead, so the focus would jump
  // the page by up to a screen under the viewer's finger. Focusing it first without
  // scrolling makes Leaflet's keyboard handler (already focused) leave it alone.
  document.addEventListener(
    "mousedown",
    function (event) {
      var map = event.target.closest && event.target.closest(".leaflet-container");
      if (map && document.activeElement !== map && map.tabIndex >= 0) {
        map.focus({ preventScroll: true });
      }
    },
    true
  );

  /* ------------------------------------------------------------------ downloads */

  // The batch page offers its results as <a class="hv-download" download href="data:...">.
  // Chromium refuses to download a data: URL longer than 2 MB, so on click the data is
  // turned into a Blob and downloaded from an object URL, which has no such limit.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a.hv-download[download]");
    if (!link || link.href.indexOf("data:") !== 0) {
      return;
    }
    event.preventDefault();
    var comma = link.href.indexOf(",");
    var meta = link.href.slice(5, comma);
    var binary = atob(link.href.slice(comma + 1));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) {
      bytes[i] = binary.charCodeAt(i);
    }
    var url = URL.createObjectURL(new Blob([bytes], { type: meta.split(";")[0] }));
    var temporary = document.createElement("a");
    temporary.href = url;
    temporary.download = link.getAttribute("download");
    document.body.appendChild(temporary);
    temporary.click();
    temporary.remove();
    setTimeout(function () {
      URL.revokeObjectURL(url);
    }, 60000);
  });

  // A link rendered with data-autoclick (the price page's "Download this valuation": the
  // kernel builds the file when the button is clicked) is clicked once, as it appears, so
  // one click downloads; the link stays on the page in case the browser held that back.
  // Each link carries a new token, so a second download of the same house is a new link.
  var autoclicked = new Set();
  function clickNewDownloads(root) {
    var links = root.matches && root.matches("a.hv-download[data-autoclick]")
      ? [root]
      : root.querySelectorAll ? root.querySelectorAll("a.hv-download[data-autoclick]") : [];
    for (var i = 0; i < links.length; i++) {
      var token = links[i].getAttribute("data-autoclick");
      if (!autoclicked.has(token)) {
        autoclicked.add(token);
        links[i].click();
      }
    }
  }
  // New download links mean a newer result: a message about a file refused before it goes.
  function isNewResult(node) {
    return node.matches(".hv-downloads") || node.querySelector(".hv-downloads") !== null;
  }
  onReady(function () {
    new MutationObserver(function (mutations) {
      mutations.forEach(function (mutation) {
        mutation.addedNodes.forEach(function (node) {
          if (node.nodeType === 1) {
            clickNewDownloads(node);
            if (isNewResult(node)) {
              clearUploadMessages();
            }
          }
        });
      });
    }).observe(document.body, { childList: true, subtree: true });
  });

  /* ------------------------------------------------------------------ 6. address */

  // After each reprice the price page's share link carries data-hv-address="?<its query>"
  // (homevalue.ui.price): the same page with every field of the house. The address bar is
  // set to it with history.replaceState (not pushState: Back leaves the page rather than
  // stepping through every keystroke), so Reload, a bookmark or a new kernel brings the
  // house back. Only a query string for this same path is ever written, and only one made
  // of URL-encoded characters within a size limit; anything else is ignored.
  var ADDRESS_MAX_CHARS = 4096;
  var ADDRESS_QUERY = /^\?[A-Za-z0-9_.~%+=&-]*$/;

  function followAddress() {
    var source = document.querySelector("[data-hv-address]");
    if (!source || !window.history || typeof window.history.replaceState !== "function") {
      return;
    }
    var query = source.getAttribute("data-hv-address") || "";
    if (query.length > ADDRESS_MAX_CHARS || !ADDRESS_QUERY.test(query)) {
      return;
    }
    if (query !== window.location.search) {
      window.history.replaceState(window.history.state, "", window.location.pathname + query);
    }
  }

  onReady(function () {
    followAddress();
    new MutationObserver(followAddress).observe(document.body, {
      childList: true,
      subtree: true,
      attributes: true,
      attributeFilter: ["data-hv-address"],
    });
  });

  /* ------------------------------------------------------------------ printing */

  // homevalue.css lets the whole page flow onto paper. Charts (bqplot) and the map
  // (leaflet) are drawn in pixels for their size on screen and redraw for a new size only
  // after a resize, too late for the printout: for printing each keeps its screen size and
  // is scaled down (CSS zoom) to fit the paper's width, the map to a third of a page.
  var PRINT_WIDTH_PX = 680; // A4 or Letter less the 0.5in margins of @page
  var PRINT_SCALED = [
    { selector: ".bqplot", maxHeight: Infinity },
    { selector: ".hv-map", maxHeight: 260 },
  ];
  window.addEventListener("beforeprint", function () {
    PRINT_SCALED.forEach(function (kind) {
      var elements = document.querySelectorAll(kind.selector);
      for (var i = 0; i < elements.length; i++) {
        var el = elements[i];
        var box = el.getBoundingClientRect();
        var zoom = Math.min(1, PRINT_WIDTH_PX / box.width, kind.maxHeight / box.height);
        if (box.width > 0 && zoom < 1 && !el.hasAttribute("data-hv-print-width")) {
          el.setAttribute("data-hv-print-width", el.style.width);
          el.style.width = box.width + "px";
          el.style.zoom = zoom.toFixed(3);
        }
      }
    });
  });
  window.addEventListener("afterprint", function () {
    var elements = document.querySelectorAll("[data-hv-print-width]");
    for (var i = 0; i < elements.length; i++) {
      elements[i].style.width = elements[i].getAttribute("data-hv-print-width");
      elements[i].style.zoom = "";
      elements[i].removeAttribute("data-hv-print-width");
    }
  });

  /* ------------------------------------------------------------------ 4. connection lost */

  // One source: the page's kernel connection (@jupyterlab/services KernelConnection), which
  // Voilà's widget-manager plugin creates for the page's kernel and keeps as
  // window.jupyterapp.widgetManager.kernel (voila 0.5, packages/widgets_manager8/src/index.ts;
  // main.ts sets window.jupyterapp once the app has started; there is no event for that, so
  // it is looked for every 250 ms until it appears). Its signals:
  //  - statusChanged: "autorestarting"/"restarting" (the kernel died and the server started
  //    it again: the page's widgets are gone) or "dead": only a reload helps;
  //  - connectionStatusChanged: "connecting" (the websocket closed and it is retrying: a
  //    network blip reconnects within the grace period, a stopped server does not),
  //    "connected", "disconnected" (it gave up): only a reload helps.
  // A kernel the server shuts down (idle culling, DELETE /api/kernels/<id>) has its
  // websocket closed by the server (homevalue.dashboards.channels), so it shows up here too.
  // Voilà's plugin makes no widget manager when the page's kernel no longer exists as the
  // page starts: that is the same loss, told at once.
  var RECONNECT_GRACE_MS = 4000;
  var KERNEL_SEARCH_MS = 120000; // the app starts within seconds; stop looking after this
  var state = { gone: false, socketDown: false };
  var reasons = { gone: "", socketDown: "" };
  var unloading = false;
  var graceTimer = null;

  window.addEventListener("beforeunload", function () {
    // Voilà disposes of the kernel connection on unload ("dead"): that is not a lost one.
    unloading = true;
  });
  window.addEventListener("pagehide", function () {
    unloading = true;
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      unloading = false;
    }
  });

  function renderNotice() {
    if (unloading) {
      return;
    }
    var notice = document.getElementById("hv-connection-lost");
    var which = state.gone ? "gone" : state.socketDown ? "socketDown" : "";
    if (notice) {
      notice.hidden = !which;
      notice.setAttribute("data-reason", which ? reasons[which] : "");
    }
    document.body.classList.toggle("hv-disconnected", !!which);
  }

  function setLost(kind, value, reason) {
    if (unloading || state[kind] === value || (kind === "gone" && !value)) {
      return;
    }
    state[kind] = value;
    reasons[kind] = reason || "";
    if (value) {
      console.warn("homevalue: connection to the server lost (" + reason + ")");
    }
    renderNotice();
  }

  onReady(function () {
    var buttons = document.querySelectorAll("[data-hv-reload]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function (event) {
        event.preventDefault();
        window.location.reload();
      });
    }
  });

  function pageConfig() {
    var el = document.getElementById("jupyter-config-data");
    try {
      return el ? JSON.parse(el.textContent || "{}") : {};
    } catch (err) {
      return {};
    }
  }

  function watchKernel(kernel) {
    function onStatus(_sender, status) {
      if (status === "dead" || status === "autorestarting" || status === "restarting") {
        setLost("gone", true, "kernel " + status);
      }
    }
    function onConnection(_sender, status) {
      if (status === "connected") {
        clearTimeout(graceTimer);
        graceTimer = null;
        setLost("socketDown", false);
      } else if (status === "connecting" && !graceTimer) {
        graceTimer = setTimeout(function () {
          graceTimer = null;
          if (kernel.connectionStatus !== "connected") {
            setLost("socketDown", true, "reconnecting");
          }
        }, RECONNECT_GRACE_MS);
      } else if (status === "disconnected") {
        setLost("gone", true, "disconnected");
      }
    }
    kernel.statusChanged.connect(onStatus);
    kernel.connectionStatusChanged.connect(onConnection);
    onStatus(kernel, kernel.status);
    onConnection(kernel, kernel.connectionStatus);
  }

  onReady(function () {
    if (!pageConfig().kernelId) {
      return; // not a page with a kernel
    }
    var deadline = Date.now() + KERNEL_SEARCH_MS;
    (function findKernel() {
      var app = window.jupyterapp;
      if (!app) {
        if (Date.now() < deadline) {
          setTimeout(findKernel, 250);
        }
        return;
      }
      var kernel = app.widgetManager && app.widgetManager.kernel;
      if (kernel && kernel.statusChanged && kernel.connectionStatusChanged) {
        watchKernel(kernel);
      } else if (!app.widgetManager) {
        setLost("gone", true, "kernel not found");
      } else {
        console.warn("homevalue: this Voilà exposes no kernel connection; no connection notice");
      }
    })();
  });

  /* ------------------------------------------------------------------ 5. leaving */

  // When the viewer leaves, Voilà's frontend sends a beacon to voila/api/shutdown/<kernel>
  // carrying the _xsrf cookie; without the cookie the server answers 403 and the kernel
  // lives on until the idle culler (voila-dashboards/voila#1458). Only the landing page
  // sets that cookie, and viewers often arrive by a link straight to a page: fetch the
  // landing page once in the background, as early as the page config is readable.
  onReady(function () {
    var config = pageConfig();
    if (!config.kernelId || /(^|;\s*)_xsrf=/.test(document.cookie) || !window.fetch) {
      return;
    }
    window
      .fetch(config.baseUrl || "/", { credentials: "same-origin", cache: "no-store" })
      .catch(function () {}); // offline: the culler still ends the kernel
  });
})();

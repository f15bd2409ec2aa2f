// The upload page, the job page and the dashboard's copy button.
// Plain JavaScript: no framework, no build step.
(function () {
  "use strict";

  // The status endpoint answers as soon as the job ends (?wait=), or after
  // WAIT_SECONDS with the current progress, which the bar then shows.
  var WAIT_SECONDS = 2;
  var RETRY_MS = 2000;

  function $(id) { return document.getElementById(id); }

  function formatBytes(bytes) {
    if (bytes == null) return "–";
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " KB";
    return (bytes / 1048576).toFixed(2) + " MB";
  }

  // Service messages are sentences, some without their final full stop.
  function sentence(text) {
    text = String(text || "").trim();
    return /[.!?]$/.test(text) ? text : text + ".";
  }

  function setBalance(value) {
    var el = $("balance");
    if (el && value != null) el.textContent = value;
  }

  // --- job panel: progress, then before/after --------------------------
  function showProgress(progress, message) {
    var pct = Math.max(0, Math.min(100, progress | 0));
    $("job-progress-fill").style.width = pct + "%";
    $("job-percent").textContent = pct + " %";
    $("job-progressbar").setAttribute("aria-valuenow", String(pct));
    if (message) $("job-message").textContent = message;
  }

  function showResult(job) {
    $("job-result").hidden = false;
    var before = $("job-before");
    if (job.input_url) {
      before.src = job.input_url;
    } else {
      before.replaceWith(document.createTextNode("The original was deleted when it expired."));
    }
    var download = $("job-download");
    var format = String(job.output_format || "png").toUpperCase();
    download.textContent = "Download " + format;
    if (job.output_url) {
      // The "after" picture is the output file itself, shown on the
      // checkerboard: exactly what the download gives (a zip cannot be shown).
      var zip = job.output_format === "zip";
      $("job-after").hidden = zip;
      $("job-after-note").hidden = !zip;
      if (!zip) $("job-after").src = job.output_url;
      download.href = job.output_url;
      download.setAttribute("download", job.output_filename);
      download.removeAttribute("aria-disabled");
    } else {
      download.removeAttribute("href");
      download.setAttribute("aria-disabled", "true");
      $("job-expired").hidden = false;
    }
    $("job-output-size").textContent = formatBytes(job.output_size);
    var result = job.result || {};
    $("job-dimensions").textContent = result.width
      ? result.width + " × " + result.height
      : job.width + " × " + job.height;
    if (job.options_summary) $("job-options").textContent = job.options_summary;
    $("job-elapsed").textContent = job.elapsed_seconds != null ? job.elapsed_seconds.toFixed(2) + " s" : "–";
    $("job-model").textContent = job.model;
  }

  function showFailure(job) {
    showPanelError(sentence(job.error || "The background could not be removed") +
      " The credits for this image were refunded.");
  }

  function showPanelError(text) {
    var box = $("job-failed");
    box.textContent = text;
    box.hidden = false;
    $("job-progress").hidden = true;
  }

  function render(job) {
    setBalance(job.balance);
    if (job.status === "failed") { showFailure(job); return true; }
    showProgress(job.progress, job.message);
    if (job.status === "completed") { showResult(job); return true; }
    return false;
  }

  function poll(statusUrl) {
    var url = statusUrl + (statusUrl.indexOf("?") < 0 ? "?" : "&") + "wait=" + WAIT_SECONDS;
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (reply) {
        if (!reply.ok) {
          // The status request itself was refused (e.g. the session ended);
          // the job is unaffected.
          showPanelError(sentence(reply.body.error));
          return;
        }
        if (!render(reply.body)) poll(statusUrl);
      })
      .catch(function () {
        // A dropped connection is not a failed job: keep asking.
        setTimeout(function () { poll(statusUrl); }, RETRY_MS);
      });
  }

  function resetPanel(fileName) {
    var panel = $("job-panel");
    panel.hidden = false;
    $("job-heading").textContent = fileName || "Your image";
    $("job-progress").hidden = false;
    $("job-failed").hidden = true;
    $("job-result").hidden = true;
    $("job-expired").hidden = true;
    showProgress(0, "Uploading…");
  }

  // --- options panel: remembered between visits -----------------------
  var OPTIONS_KEY = "revid.upload-options";

  function optionInputs(panel) {
    return Array.prototype.filter.call(
      panel.querySelectorAll("input[id], select[id]"),
      function (el) { return el.type !== "file"; }
    );
  }

  function readStored() {
    try { return JSON.parse(window.localStorage.getItem(OPTIONS_KEY) || "{}") || {}; }
    catch (e) { return {}; }
  }

  function setupOptions(panel) {
    var inputs = optionInputs(panel);
    // The page's own defaults, for "Reset options" (a select's is the option
    // marked "selected", not its value now).
    var defaults = {};
    inputs.forEach(function (el) {
      if (el.type === "checkbox") {
        defaults[el.id] = el.defaultChecked;
      } else if (el.tagName === "SELECT") {
        var marked = el.querySelector("option[selected]") || el.options[0];
        defaults[el.id] = marked ? marked.value : "";
      } else {
        defaults[el.id] = el.defaultValue;
      }
    });

    // Dependent fields are disabled, so the form does not send them.
    function sync() {
      // Each field names the checkbox that enables it (the option table's enabled_by).
      Array.prototype.forEach.call(panel.querySelectorAll("[data-enabled-by]"), function (el) {
        var toggle = $(el.getAttribute("data-enabled-by"));
        el.disabled = !(toggle && toggle.checked);
      });
      $("opt-format-hint").hidden = !($("opt-format").value === "jpg" && !$("opt-bg").checked);
    }

    function save() {
      var values = { open: panel.open, advanced: $("options-advanced").open };
      inputs.forEach(function (el) {
        values[el.id] = el.type === "checkbox" ? el.checked : el.value;
      });
      try { window.localStorage.setItem(OPTIONS_KEY, JSON.stringify(values)); }
      catch (e) { /* storage full or disabled: the choice is just not remembered */ }
    }

    function apply(values) {
      inputs.forEach(function (el) {
        if (!(el.id in values)) return;
        if (el.type === "checkbox") {
          el.checked = !!values[el.id];
        } else {
          var before = el.value;
          el.value = values[el.id];
          if (el.tagName === "SELECT" && el.value === "") el.value = before;
        }
      });
      sync();
    }

    var stored = readStored();
    apply(stored);
    if (stored.open) panel.open = true;
    if (stored.advanced) $("options-advanced").open = true;
    panel.addEventListener("change", function () { sync(); save(); });
    panel.addEventListener("input", save);
    panel.addEventListener("toggle", save, true);
    $("options-reset").addEventListener("click", function () {
      apply(defaults);
      save();
    });
    return save;
  }

  // --- upload form -------------------------------------------------------
  function setupUpload(form) {
    var input = $("file-input");
    var dropzone = $("dropzone");
    var chosen = $("file-chosen");
    var errorBox = $("upload-error");
    var button = $("submit-button");
    var previewUrl = null;
    var optionsPanel = $("options-panel");
    var saveOptions = optionsPanel ? setupOptions(optionsPanel) : function () {};

    function showError(text) {
      errorBox.textContent = text;
      errorBox.hidden = false;
      errorBox.scrollIntoView({ block: "nearest" });
    }

    function describeChoice() {
      chosen.textContent = "";
      errorBox.hidden = true;
      if (previewUrl) { URL.revokeObjectURL(previewUrl); previewUrl = null; }
      var file = input.files && input.files[0];
      if (!file) return;
      if (/^image\//.test(file.type)) {
        previewUrl = URL.createObjectURL(file);
        var img = document.createElement("img");
        img.src = previewUrl;
        img.alt = "";
        chosen.appendChild(img);
      }
      var label = document.createElement("span");
      label.textContent = file.name + " (" + formatBytes(file.size) + ")";
      chosen.appendChild(label);
    }

    input.addEventListener("change", describeChoice);

    ["dragenter", "dragover"].forEach(function (type) {
      dropzone.addEventListener(type, function (event) {
        event.preventDefault();
        dropzone.classList.add("dragging");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      dropzone.addEventListener(type, function (event) {
        event.preventDefault();
        dropzone.classList.remove("dragging");
      });
    });
    dropzone.addEventListener("drop", function (event) {
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        describeChoice();
      }
    });

    ["dragover", "drop"].forEach(function (type) {
      window.addEventListener(type, function (event) { event.preventDefault(); });
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      errorBox.hidden = true;
      var file = input.files && input.files[0];
      if (!file) {
        showError("Choose a photo first: drop it on the box or use the file picker.");
        input.focus();
        return;
      }
      saveOptions();
      button.disabled = true;
      button.textContent = "Uploading…";
      fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      })
        .then(function (response) {
          return response.json().then(
            function (body) { return { ok: response.ok, body: body }; },
            function () {
              var text = response.status === 403
                ? "Your session has expired; reload the page and try again."
                : "The server could not take the upload (status " + response.status + ").";
              return { ok: false, body: { error: text } };
            }
          );
        })
        .then(function (reply) {
          button.disabled = false;
          button.textContent = "Remove background";
          if (!reply.ok) {
            showError(sentence(reply.body.error) + " Nothing was charged.");
            return;
          }
          resetPanel(file.name);
          render(reply.body);
          $("job-panel").scrollIntoView({ behavior: "smooth", block: "start" });
          poll(reply.body.status_url);
        })
        .catch(function () {
          button.disabled = false;
          button.textContent = "Remove background";
          showError("The upload did not reach the server; check your connection and try again. Nothing was charged.");
        });
    });
  }

  // --- dashboard: copy the new key --------------------------------------
  function setupCopy(button) {
    button.addEventListener("click", function () {
      var target = $(button.getAttribute("data-copy-target"));
      var text = target.textContent.trim();
      var done = function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { selectText(target); });
      } else {
        selectText(target);
        try { document.execCommand("copy"); done(); } catch (e) { /* selected for Ctrl+C */ }
      }
    });
  }

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function setupConfirm(form) {
    ["dragover", "drop"].forEach(function (type) {
      window.addEventListener(type, function (event) { event.preventDefault(); });
    });

    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = $("upload-form");
    if (form) setupUpload(form);
    var panel = $("job-panel");
    if (panel && panel.getAttribute("data-status-url")) poll(panel.getAttribute("data-status-url"));
    Array.prototype.forEach.call(document.querySelectorAll("[data-copy-target]"), setupCopy);
    Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), setupConfirm);
  });
})();

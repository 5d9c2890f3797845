/* The service window: a USB scanner types the code and Enter into the always-focused field. */
(function () {
  "use strict";
  var E = window.Etrust;
  var $ = E.$;
  var scan = $("scan");
  var holder = $("holder-code");
  var INTERACTIVE = "input, textarea, select, button, summary, a, label, video";

  function focusScan() {
    if (document.activeElement !== scan) scan.focus({ preventScroll: true });
  }

  /** The holder's ID number for this check, then cleared: it belongs to one person. */
  function takeHolder() {
    var value = holder.value.trim();
    holder.value = "";
    return value || null;
  }

  function after() {
    focusScan();
  }

  function verifyText(text) {
    var code = text.trim();
    if (!code) return Promise.resolve();
    var options = { channel: "window", holderCode: takeHolder(), useToken: true };
    return E.run(E.verifyCode(code, options), after);
  }

  function verifyFile(file, inputId) {
    var photo = inputId === "image-file"; // a photo of a code can be matched to the holder
    var options = { channel: "window", holderCode: photo ? takeHolder() : null, useToken: true };
    return E.run(E.verifyFile(file, options), after);
  }

  // The scanner: its Enter ends a code. The field is cleared at once for the next scan.
  scan.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.isComposing) return;
    event.preventDefault();
    var text = scan.value;
    scan.value = "";
    verifyText(text);
  });
  $("scan-form").addEventListener("submit", function (event) {
    event.preventDefault();
  });
  holder.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      focusScan();
    }
  });

  // Focus comes back to the scan field whenever it is lost to nothing, and on any click that
  // does not land on another control (the ID field, the uploads, the login).
  document.addEventListener("focusout", function () {
    window.setTimeout(function () {
      var active = document.activeElement;
      if (!active || active === document.body || active === document.documentElement) focusScan();
    }, 0);
  });
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target && target.closest && target.closest(INTERACTIVE)) return;
    focusScan();
  });
  // Back from another window or a file chooser (chosen or cancelled): the scanner's field,
  // unless the clerk was typing in another field.
  function isTextField(node) {
    return node && (node.tagName === "TEXTAREA" ||
      (node.tagName === "INPUT" && node.type !== "file"));
  }
  window.addEventListener("focus", function () {
    if (!isTextField(document.activeElement)) focusScan();
  });
  ["image-file", "document-file"].forEach(function (id) {
    $(id).addEventListener("cancel", focusScan);
  });

  // Says whether the next scan will land in the field.
  var ready = $("scan-ready");
  scan.addEventListener("focus", function () {
    ready.textContent = "就绪：可以扫码";
    ready.className = "ready";
  });
  scan.addEventListener("blur", function () {
    ready.textContent = "扫码框未选中：点击页面空白处后再扫码";
    ready.className = "ready not-ready";
  });

  // The clerk's token: checked by the server before it is kept, and shown by name.
  var who = $("who");
  var logout = $("logout");
  var loginBox = $("login-box");

  function showWho(client, message) {
    if (client) {
      var dept = client.department ? "，" + client.department : "";
      who.textContent = "已登录：" + client.name + "（" + client.role + dept + "）";
      who.className = "who who-in";
      logout.hidden = false;
      loginBox.hidden = true;
    } else {
      who.textContent = message || "未登录（核验记录为公众查询）";
      who.className = "who" + (message ? " who-error" : "");
      logout.hidden = true;
      loginBox.hidden = false;
    }
  }

  function whoami(token) {
    return E.request("/window/me", {
      method: "GET",
      headers: { Authorization: "Bearer " + token },
    });
  }

  $("login-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var input = $("token");
    var token = input.value.trim();
    input.value = "";
    if (!token) return;
    whoami(token).then(function (outcome) {
      if (outcome.answer) {
        E.setToken(token);
        loginBox.open = false;
        showWho(outcome.answer);
      } else {
        showWho(null, "登录失败：" + (outcome.error.title || outcome.error.detail));
      }
      focusScan();
    });
  });

  logout.addEventListener("click", function () {
    E.setToken("");
    showWho(null);
    focusScan();
  });

  var saved = E.getToken();
  if (saved) {
    whoami(saved).then(function (outcome) {
      if (outcome.answer) showWho(outcome.answer);
      else {
        E.setToken("");
        showWho(null, "登录已失效，请重新登录");
      }
    });
  }

  E.wireUploads(verifyFile);
  E.wireCamera(verifyText);
  focusScan();
})();

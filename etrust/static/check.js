/* The public page: paste a code, or upload a photo of one or a signed document. */
(function () {
  "use strict";
  var E = window.Etrust;
  var $ = E.$;
  var options = { channel: "citizen", useToken: false };

  function verifyText(text) {
    var code = text.trim();
    if (!code) return Promise.resolve();
    return E.run(E.verifyCode(code, options));
  }

  $("code-form").addEventListener("submit", function (event) {
    event.preventDefault();
    verifyText($("code").value);
  });
  $("code").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      verifyText($("code").value);
    }
  });

  E.wireUploads(function (file) {
    return E.run(E.verifyFile(file, options));
  });
  E.wireCamera(function (text) {
    $("code").value = text;
    verifyText(text);
  });
})();

/* Show the advice for a warning sign the moment its box is ticked.
 *
 * Under each warning-sign box the page has an empty aria-live region
 * (#advice-<key>) and a <template data-flag="<key>"> holding that sign's advice.
 * Ticking the box copies the advice into the region, right under the box, and
 * screen readers announce it; unticking empties it. Nothing is loaded from
 * anywhere; without scripts the server shows the advice after submitting.
 */
(function () {
  "use strict";
  if (!("content" in document.createElement("template"))) return;

  function show(box) {
    var region = document.getElementById("advice-" + box.value);
    var template = document.querySelector('template[data-flag="' + box.value + '"]');
    if (!region || !template) return;
    if (box.checked && !region.firstChild) {
      region.appendChild(template.content.firstElementChild.cloneNode(true));
    } else if (!box.checked) {
      while (region.firstChild) region.removeChild(region.firstChild);
    }
    region.className = region.firstChild ? "flag-advice shown" : "flag-advice";
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.name === "red_flag" && target.type === "checkbox") show(target);
  });
  // after a form error the server already shows this advice at the top of the page
  if (!document.querySelector(".urgent")) {
    var boxes = document.querySelectorAll('input[type="checkbox"][name="red_flag"]');
    for (var i = 0; i < boxes.length; i++) show(boxes[i]);
  }
})();

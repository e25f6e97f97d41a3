// The published table's change form shows only the fields of the chosen source. Which fields
// those are comes from the server (PublishedTable.SOURCE_FIELDS, in #perspective-source-fields).
(() => {
    function setUp() {
        const data = document.getElementById("perspective-source-fields");
        const select = document.getElementById("id_source");
        if (!data || !select) return;
        const bySource = JSON.parse(data.textContent);
        const governed = new Set(Object.values(bySource).flat());
        const namesOf = (element) =>
            [...element.classList].filter((c) => c.startsWith("field-")).map((c) => c.slice(6));

        function apply() {
            const shown = new Set(bySource[select.value] ?? []);
            const visible = (name) => !governed.has(name) || shown.has(name);
            for (const box of document.querySelectorAll(".fieldBox")) {
                box.hidden = !namesOf(box).every(visible);
            }
            for (const row of document.querySelectorAll(".form-row")) {
                const names = namesOf(row);
                if (names.length) row.hidden = !names.some(visible);
            }
        }
        select.addEventListener("change", apply);
        apply();
    }
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUp);
    else setUp();
})();

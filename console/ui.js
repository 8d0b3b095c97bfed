// Small DOM helpers. Text always goes in through textContent (never innerHTML), so nothing
// the server or a user typed can become markup.

/** h('button', {class: 'primary', onclick: fn}, 'Save') */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else if (name === 'for') {
      el.htmlFor = value;
    } else if (name === 'value') {
      el.value = value;
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

let nextId = 0;
export const uid = (prefix) => `${prefix}-${++nextId}`;

/** A labelled input: returns {field, input}. */
export function field(label, attrs = {}, hint) {
  const id = attrs.id ?? uid('f');
  const hintId = hint ? `${id}-hint` : undefined;
  const input = h(attrs.tag ?? 'input', { ...attrs, tag: undefined, id, 'aria-describedby': hintId });
  const wrap = h('div', { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint ? h('small', { id: hintId, class: 'hint' }, hint) : null);
  return { field: wrap, input };
}

/** A table with a caption, headers and rows (arrays of cells). */
export function table(caption, headers, rows, empty = 'Nothing yet.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('caption', { class: 'sr-only' }, caption),
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

export function section(title, ...children) {
  const id = uid('s');
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

/** A definition list from [label, value] pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

export function notice(kind, ...children) {
  return h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : null }, ...children);
}

let keepAcrossNavigation = false;

/**
 * Announces a result in the live region at the top of the page. With `navigating`, it stays
 * through the navigation that follows (e.g. "Created tenant acme" on the tenant's page).
 */
export function announce(message, kind = 'ok', { navigating = false } = {}) {
  keepAcrossNavigation = navigating;
  const status = document.getElementById('status');
  status.replaceChildren(h('p', { class: `toast ${kind}` }, message));
}

/** Clears the announcement when the user moves to another page. */
export function clearAnnouncement() {
  if (keepAcrossNavigation) { keepAcrossNavigation = false; return; }
  document.getElementById('status').replaceChildren();
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return h('time', { datetime: d.toISOString(), title: d.toISOString() },
    d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'));
}

export function badge(text, kind = text) {
  return h('span', { class: `badge ${kind}` }, text);
}

/**
 * A modal confirmation (native <dialog>: focus is trapped, Escape cancels). With `typed`,
 * the confirm button stays disabled until the user types that exact text.
 * Resolves true when confirmed.
 */
export function confirmDialog({ title, body, confirmLabel, danger = false, typed }) {
  return new Promise((resolve) => {
    const titleId = uid('dlg');
    let input;
    const ok = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', disabled: Boolean(typed) }, confirmLabel);
    const cancel = h('button', { type: 'button', class: 'ghost' }, 'Cancel');
    const parts = [h('h2', { id: titleId }, title), ...[body].flat()];
    if (typed) {
      const f = field(`Type ${typed} to confirm`, { autocomplete: 'off', spellcheck: 'false' });
      input = f.input;
      input.addEventListener('input', () => { ok.disabled = input.value !== typed; });
      parts.push(f.field);
    }
    const form = h('form', { method: 'dialog' }, ...parts, h('div', { class: 'actions' }, cancel, ok));
    const dlg = h('dialog', { 'aria-labelledby': titleId, class: danger ? 'danger' : '' }, form);
    let confirmed = false;
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (typed && input.value !== typed) return;
      confirmed = true;
      dlg.close();
    });
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => { dlg.remove(); resolve(confirmed); });
    document.body.append(dlg);
    dlg.showModal();
    (input ?? cancel).focus();
  });
}

/** Runs an action for a button: disables it meanwhile, announces errors. */
export async function busy(button, fn) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } catch (err) {
    announce(err.message ?? String(err), 'error');
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

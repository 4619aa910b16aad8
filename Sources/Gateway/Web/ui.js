// Small DOM helpers shared by the views. Text is always set as text (never parsed as HTML).

export const $ = (selector, root = document) => root.querySelector(selector);

/**
 * Creates an element: `props` are attributes (true → present, null/false → absent), plus
 * `dataset` (an object) and `on<event>` listeners; children are nodes or strings.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  node.append(...children.flat().filter((child) => child != null && child !== false));
  return node;
}

/** A labelled form field: <label for=id>text</label> then the input (and an optional hint). */
export function field(label, input, hint) {
  const hintNode = hint ? el('small', { class: 'hint', id: `${input.id}-hint` }, hint) : null;
  if (hintNode) input.setAttribute('aria-describedby', hintNode.id);
  return el('div', { class: 'field' }, el('label', { for: input.id }, label), input, hintNode);
}

/** A toast in #toast; `kind` lands in data-kind (a notification kind, or info / error). */
export function toast(kind, text, ms = 6000) {
  const container = $('#toast');
  if (!container) return;
  const item = el('div', { class: `toast toast-${kind}`, dataset: { kind } }, text);
  container.append(item);
  setTimeout(() => item.remove(), ms);
}

/** A message for a view that needs a logged-in user. */
export function loginNeeded(what) {
  return el('p', { class: 'notice' }, `Log in to ${what}. `, el('a', { href: '#/login' }, 'Log in or sign up'));
}

// shoplab storefront: a small single-page app over the front's /api gateway and /session endpoints.
// The session token lives in an HttpOnly cookie this script cannot read; state-changing calls send the CSRF
// token from the readable shoplab_csrf cookie. Everything shown is put into the page with textContent.
"use strict";

const state = { user: null, cartCount: 0, checkout: null };

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "testid") el.dataset.testid = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)shoplab_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

// call sends a request and returns {status, data}; network failures come back as status 0.
async function call(method, url, body, headers) {
  const opts = { method, credentials: "same-origin", headers: Object.assign({ "X-CSRF-Token": csrfToken() }, headers || {}) };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  try {
    const res = await fetch(url, opts);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    return { status: res.status, data };
  } catch (e) {
    return { status: 0, data: { error: { code: "network", message: "The shop cannot be reached. Check your connection and try again." } } };
  }
}

const api = (method, path, body, headers) => call(method, "/api/" + path, body, headers);

function errorMessage(res) {
  if (res.data && res.data.error && res.data.error.message) return res.data.error.message;
  return "Something went wrong (HTTP " + res.status + "). Please try again.";
}

function money(cents, currency) {
  try {
    return new Intl.NumberFormat("en-US", { style: "currency", currency: currency || "USD" }).format(cents / 100);
  } catch (_) {
    return (cents / 100).toFixed(2) + " " + currency;
  }
}

function flash(message, kind) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = kind === "error" ? "error" : "";
  el.hidden = !message;
  el.dataset.testid = "flash";
}

// Each route gets its own render function; a page that finishes loading after the visitor has moved on
// renders nothing, so a slow answer never overwrites a newer page.
let routeSeq = 0;
function renderer() {
  const seq = ++routeSeq;
  const render = (...nodes) => {
    if (seq !== routeSeq) return;
    document.getElementById("view").replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false));
  };
  render.current = () => seq === routeSeq;
  return render;
}

function go(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

// needLogin sends the visitor to the login form and back here afterwards.
function needLogin() {
  sessionStorage.setItem("after_login", location.hash || "#/");
  flash("Please log in first.", "error");
  go("#/login");
}

async function loadSession() {
  const res = await call("GET", "/session");
  state.user = res.status === 200 ? res.data.user : null;
  renderAccount();
  await refreshCartCount();
}

function isAdmin() {
  return !!(state.user && Array.isArray(state.user.roles) && state.user.roles.includes("admin"));
}

function renderAccount() {
  document.getElementById("nav-admin").hidden = !isAdmin();
  const el = document.getElementById("account");
  if (state.user) {
    el.replaceChildren(h("span", { class: "muted", testid: "user-name" }, state.user.name), " ",
      h("button", { class: "secondary", testid: "logout", onclick: logout }, "Log out"));
  } else {
    el.replaceChildren(h("a", { href: "#/login", testid: "nav-login" }, "Log in"), " ", h("a", { href: "#/register", testid: "nav-register" }, "Register"));
  }
}

async function refreshCartCount() {
  state.cartCount = 0;
  if (state.user) {
    const res = await api("GET", "cart/v1/cart");
    if (res.status === 200) state.cartCount = res.data.items.reduce((n, it) => n + it.quantity, 0);
  }
  document.getElementById("cart-count").textContent = String(state.cartCount);
}

async function logout() {
  const res = await call("DELETE", "/session");
  if (res.status !== 204) { flash(errorMessage(res), "error"); return; }
  state.user = null;
  renderAccount();
  await refreshCartCount();
  flash("You are logged out.");
  go("#/");
}

// ---- pages ----

async function productsPage(render, params) {
  const q = params.get("q") || "";
  const category = params.get("category") || "";
  const [cats, list] = await Promise.all([
    api("GET", "catalog/v1/categories"),
    api("GET", "catalog/v1/products?limit=24&q=" + encodeURIComponent(q) + "&category=" + encodeURIComponent(category)),
  ]);
  if (list.status !== 200) { render(h("h1", {}, "Products"), h("div", { class: "notice" }, errorMessage(list))); return; }
  const search = h("input", { type: "search", placeholder: "Search products", value: q, testid: "search", "aria-label": "Search products" });
  const form = h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); go(listHash(search.value.trim(), category)); } },
    search, h("button", { type: "submit", testid: "search-submit" }, "Search"));
  const chips = h("div", { class: "toolbar" },
    h("button", { type: "button", class: "chip" + (category ? "" : " active"), onclick: () => go(listHash(q, "")) }, "All"),
    ((cats.data && cats.data.categories) || []).map((c) =>
      h("button", { type: "button", class: "chip" + (c === category ? " active" : ""), testid: "category-" + c, onclick: () => go(listHash(q, c)) }, c)));
  const grid = h("div", { class: "grid", testid: "product-grid" });
  let next = list.data.next_cursor;
  const addCards = (products) => products.forEach((p) => grid.append(productCard(p)));
  addCards(list.data.products);
  const more = h("button", { class: "secondary", hidden: !next, onclick: async () => {
    const res = await api("GET", "catalog/v1/products?limit=24&q=" + encodeURIComponent(q) + "&category=" + encodeURIComponent(category) + "&cursor=" + encodeURIComponent(next));
    if (res.status !== 200) { flash(errorMessage(res), "error"); return; }
    addCards(res.data.products);
    next = res.data.next_cursor;
    more.hidden = !next;
  } }, "Load more");
  const empty = list.data.products.length ? null : h("p", { class: "muted", testid: "no-results" }, "No products match.");
  render(h("h1", {}, category ? "Products: " + category : "Products"), form, chips, empty, grid, h("p", {}, more));
}

function listHash(q, category) {
  const p = new URLSearchParams();
  if (q) p.set("q", q);
  if (category) p.set("category", category);
  const s = p.toString();
  return "#/" + (s ? "?" + s : "");
}

function productCard(p) {
  return h("article", { class: "card", testid: "product-card", "data-product-id": p.id },
    h("h2", {}, h("a", { href: "#/product/" + encodeURIComponent(p.id) }, p.name)),
    h("p", {}, p.description),
    h("div", { class: "muted" }, p.category + " · " + (p.stock > 0 ? p.stock + " in stock" : "sold out")),
    h("div", { class: "price" }, money(p.price_cents, p.currency)),
    h("button", { testid: "add-to-cart", disabled: p.stock < 1, onclick: () => addToCart(p, 1) }, "Add to cart"));
}

async function addToCart(p, quantity) {
  if (!state.user) { needLogin(); return; }
  const cart = await api("GET", "cart/v1/cart");
  const existing = cart.status === 200 ? cart.data.items.find((it) => it.product_id === p.id) : null;
  const qty = Math.min(99, (existing ? existing.quantity : 0) + quantity);
  const res = await api("PUT", "cart/v1/cart/items/" + encodeURIComponent(p.id), { quantity: qty });
  if (res.status === 401) { needLogin(); return; }
  if (res.status !== 200) { flash(errorMessage(res), "error"); return; }
  await refreshCartCount();
  flash(p.name + " added to your cart.");
}

async function productPage(render, id) {
  const res = await api("GET", "catalog/v1/products/" + encodeURIComponent(id));
  if (res.status !== 200) { render(h("h1", {}, "Product"), h("div", { class: "notice" }, errorMessage(res))); return; }
  const p = res.data;
  const qty = h("input", { type: "number", min: "1", max: "99", value: "1", testid: "product-quantity", "aria-label": "Quantity" });
  render(h("p", {}, h("a", { href: "#/" }, "← All products")),
    h("article", { class: "card", testid: "product-detail" },
      h("h1", {}, p.name), h("p", {}, p.description),
      h("div", { class: "muted" }, "SKU " + p.sku + " · " + p.category + " · " + p.stock + " in stock"),
      h("div", { class: "price" }, money(p.price_cents, p.currency)),
      h("div", { class: "row" }, qty, h("button", { testid: "add-to-cart", onclick: () => addToCart(p, parseInt(qty.value, 10) || 1) }, "Add to cart"))));
}

async function cartPage(render) {
  if (!state.user) { needLogin(); return; }
  const res = await api("GET", "cart/v1/cart");
  if (res.status === 401) { needLogin(); return; }
  if (res.status !== 200) { render(h("h1", {}, "Cart"), h("div", { class: "notice" }, errorMessage(res))); return; }
  const c = res.data;
  if (!c.items.length) {
    render(h("h1", {}, "Cart"), h("p", { testid: "cart-empty" }, "Your cart is empty. ", h("a", { href: "#/" }, "Browse products")));
    return;
  }
  const rows = c.items.map((it) => {
    const qty = h("input", { type: "number", min: "1", max: "99", value: String(it.quantity), testid: "cart-quantity", "aria-label": "Quantity of " + it.name });
    return h("tr", { testid: "cart-item", "data-product-id": it.product_id },
      h("td", {}, it.name), h("td", { class: "num" }, money(it.unit_price_cents, it.currency)),
      h("td", {}, qty, " ", h("button", { class: "secondary", testid: "cart-update", onclick: () => setQuantity(it.product_id, parseInt(qty.value, 10)) }, "Update")),
      h("td", { class: "num" }, money(it.unit_price_cents * it.quantity, it.currency)),
      h("td", {}, h("button", { class: "secondary", testid: "cart-remove", onclick: () => removeItem(it.product_id) }, "Remove")));
  });
  render(h("h1", {}, "Cart"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Product"), h("th", { class: "num" }, "Price"), h("th", {}, "Quantity"), h("th", { class: "num" }, "Subtotal"), h("th", {}))), h("tbody", {}, rows)),
    h("div", { class: "total", testid: "cart-total" }, "Total " + money(c.total_cents, c.currency)),
    h("p", { style: "text-align:right" }, h("a", { class: "button", href: "#/checkout", testid: "go-checkout" }, "Check out")));
}

async function setQuantity(productID, qty) {
  if (!(qty >= 1 && qty <= 99)) { flash("Quantity must be from 1 to 99.", "error"); return; }
  const res = await api("PUT", "cart/v1/cart/items/" + encodeURIComponent(productID), { quantity: qty });
  if (res.status !== 200) { flash(errorMessage(res), "error"); return; }
  flash("");
  await refreshCartCount();
  cartPage(renderer());
}

async function removeItem(productID) {
  const res = await api("DELETE", "cart/v1/cart/items/" + encodeURIComponent(productID));
  if (res.status !== 200) { flash(errorMessage(res), "error"); return; }
  await refreshCartCount();
  cartPage(renderer());
}

function randomKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function checkoutPage(render) {
  if (!state.user) { needLogin(); return; }
  const cart = await api("GET", "cart/v1/cart");
  if (cart.status === 200 && !cart.data.items.length) { go("#/cart"); return; }
  const field = (label, name, attrs) => h("label", {}, label, h("input", Object.assign({ name, required: true, testid: "checkout-" + name }, attrs || {})));
  const year = new Date().getFullYear();
  const error = h("div", { class: "notice", testid: "checkout-error", hidden: true });
  const submit = h("button", { type: "submit", testid: "checkout-submit" }, "Place order");
  const form = h("form", { class: "stack", onsubmit: (e) => { e.preventDefault(); placeOrder(form, submit, error); } },
    h("strong", {}, "Shipping address"),
    field("Full name", "name", { value: state.user.name, autocomplete: "name" }),
    field("Street and number", "line1", { autocomplete: "address-line1" }),
    h("div", { class: "row" }, field("City", "city", { autocomplete: "address-level2" }), field("Postal code", "postal_code", { autocomplete: "postal-code" })),
    h("label", {}, "Country", h("select", { name: "country", testid: "checkout-country" },
      [["US", "United States"], ["GB", "United Kingdom"], ["DE", "Germany"], ["FR", "France"], ["NL", "Netherlands"], ["CA", "Canada"]].map(([v, t]) => h("option", { value: v }, t)))),
    h("strong", {}, "Card"),
    field("Card number", "number", { inputmode: "numeric", autocomplete: "cc-number", placeholder: "4242 4242 4242 4242" }),
    h("div", { class: "row" },
      field("Month", "exp_month", { type: "number", min: "1", max: "12", value: "12" }),
      field("Year", "exp_year", { type: "number", min: String(year), max: String(year + 20), value: String(year + 2) }),
      field("CVC", "cvc", { inputmode: "numeric", value: "123", maxlength: "4" })),
    h("div", { class: "hint" }, "Test cards: 4242 4242 4242 4242 is authorised; 4000 0000 0000 0002 is declined."),
    error, submit);
  render(h("h1", {}, "Checkout"), cart.status === 200 ? h("p", { class: "total", testid: "checkout-total" }, "Total " + money(cart.data.total_cents, cart.data.currency)) : null, form);
}

async function placeOrder(form, submit, errorBox) {
  const v = (n) => form.elements[n].value.trim();
  const body = {
    shipping_address: { name: v("name"), line1: v("line1"), city: v("city"), postal_code: v("postal_code"), country: v("country") },
    card: { number: v("number").replace(/[\s-]/g, ""), exp_month: parseInt(v("exp_month"), 10), exp_year: parseInt(v("exp_year"), 10), cvc: v("cvc") },
  };
  const text = JSON.stringify(body);
  // The same checkout, retried after a failure that left it undecided, reuses its Idempotency-Key, so it is
  // never charged twice; a changed form is a new checkout.
  if (!state.checkout || state.checkout.body !== text || !state.checkout.retry) state.checkout = { key: randomKey(), body: text };
  submit.disabled = true;
  errorBox.hidden = true;
  const res = await api("POST", "orders/v1/orders", body, { "Idempotency-Key": state.checkout.key });
  submit.disabled = false;
  state.checkout.retry = res.status === 0 || res.status >= 500;
  if (res.status === 201 || res.status === 200) {
    state.checkout = null;
    await refreshCartCount();
    sessionStorage.setItem("just_ordered", res.data.id);
    go("#/order/" + encodeURIComponent(res.data.id));
    return;
  }
  if (res.status === 401) { needLogin(); return; }
  let message = errorMessage(res);
  const sentence = (m) => (/[.!?]$/.test(m) ? m : m + ".");
  if (res.status === 422) message = "Payment declined: " + sentence(message) + " Please use another card.";
  else if (state.checkout.retry) message = sentence(message) + " You can press Place order again safely: you will not be charged twice.";
  errorBox.textContent = message;
  errorBox.hidden = false;
}

// cancelOrder asks orders to cancel (refund and restock); calling it again is harmless.
async function cancelOrder(id, button) {
  button.disabled = true;
  const res = await api("POST", "orders/v1/orders/" + encodeURIComponent(id) + "/cancel");
  button.disabled = false;
  if (res.status === 401) { needLogin(); return false; }
  if (res.status !== 200) { flash(errorMessage(res), "error"); return false; }
  flash("Order " + id + " is cancelled: the payment was refunded.");
  return true;
}

function orderView(o, onChange) {
  const cancel = o.status === "confirmed" && onChange
    ? h("button", { class: "secondary", testid: "order-cancel", onclick: async (e) => { if (await cancelOrder(o.id, e.target)) onChange(); } }, "Cancel order")
    : null;
  return h("article", { class: "card", testid: "order", "data-order-id": o.id },
    h("h2", {}, "Order ", h("code", {}, o.id)),
    h("div", {}, h("span", { class: "status " + o.status, testid: "order-status" }, o.status.replace("_", " ")), " ",
      h("span", { class: "muted" }, new Date(o.created_at).toLocaleString())),
    h("ul", {}, o.items.map((it) => h("li", {}, it.quantity + " × " + it.name + " — " + money(it.unit_price_cents * it.quantity, o.currency)))),
    h("div", { class: "price", testid: "order-total" }, "Total " + money(o.total_cents, o.currency)), cancel);
}

async function orderPage(render, id) {
  if (!state.user) { needLogin(); return; }
  const res = await api("GET", "orders/v1/orders/" + encodeURIComponent(id));
  if (res.status !== 200) { render(h("h1", {}, "Order"), h("div", { class: "notice" }, errorMessage(res))); return; }
  const thanks = sessionStorage.getItem("just_ordered") === id && res.data.status === "confirmed";
  sessionStorage.removeItem("just_ordered");
  render(thanks ? h("div", { class: "success", testid: "order-confirmation" }, "Thank you! Your order is confirmed.") : null,
    orderView(res.data, () => orderPage(renderer(), id)), h("p", {}, h("a", { href: "#/orders" }, "All your orders")));
}

async function ordersPage(render) {
  if (!state.user) { needLogin(); return; }
  const res = await api("GET", "orders/v1/orders");
  if (res.status === 401) { needLogin(); return; }
  if (res.status !== 200) { render(h("h1", {}, "Your orders"), h("div", { class: "notice" }, errorMessage(res))); return; }
  const orders = res.data.orders;
  render(h("h1", {}, "Your orders"),
    orders.length ? h("div", { class: "grid", testid: "order-list" }, orders.map((o) => orderView(o, () => ordersPage(renderer()))))
      : h("p", { testid: "no-orders" }, "No orders yet."));
}

// ---- the operators' area: shown only to admins; every call is checked by the services themselves ----

async function adminPage(render) {
  if (!state.user) { needLogin(); return; }
  if (!isAdmin()) { render(h("h1", {}, "Admin"), h("div", { class: "notice" }, "This area is for the shop's operators.")); return; }
  const products = h("section", { class: "admin-section", testid: "admin-products" });
  const orders = h("section", { class: "admin-section", testid: "admin-orders" });
  render(h("h1", {}, "Admin"), products, orders);
  await Promise.all([adminProducts(products), adminOrders(orders, "")]);
}

function cents(input) {
  const v = parseFloat(input.value);
  return Number.isFinite(v) ? Math.round(v * 100) : NaN;
}

async function adminProducts(section) {
  const res = await api("GET", "catalog/v1/products?limit=100");
  if (res.status !== 200) { section.replaceChildren(h("h2", {}, "Products"), h("div", { class: "notice" }, errorMessage(res))); return; }
  const reload = () => adminProducts(section);
  const f = (label, name, attrs) => h("label", {}, label, h("input", Object.assign({ name, testid: "admin-" + name }, attrs || {})));
  const create = h("form", { class: "grid-form", testid: "admin-create", onsubmit: async (e) => {
    e.preventDefault();
    const el = create.elements;
    const body = { sku: el.sku.value.trim(), name: el.name.value.trim(), description: el.description.value.trim(), category: el.category.value.trim(),
      price_cents: cents(el.price), currency: el.currency.value.trim().toUpperCase(), stock: parseInt(el.stock.value, 10) };
    const r = await api("POST", "catalog/v1/products", body);
    if (r.status !== 201) { flash(errorMessage(r), "error"); return; }
    flash("Product " + r.data.name + " created.");
    reload();
  } },
    f("SKU", "sku", { required: true, maxlength: "64" }), f("Name", "name", { required: true }), f("Description", "description"),
    f("Category", "category", { required: true }), f("Price", "price", { type: "number", step: "0.01", min: "0.01", required: true }),
    f("Currency", "currency", { value: "USD", maxlength: "3", required: true }), f("Stock", "stock", { type: "number", min: "0", value: "0", required: true }),
    h("label", {}, "\u00a0", h("button", { type: "submit", testid: "admin-create-submit" }, "Create product")));
  const rows = res.data.products.map((p) => {
    const price = h("input", { type: "number", step: "0.01", min: "0.01", value: (p.price_cents / 100).toFixed(2), testid: "admin-price-edit", "aria-label": "Price of " + p.name });
    const delta = h("input", { type: "number", value: "10", testid: "admin-restock-delta", "aria-label": "Stock change for " + p.name });
    const reason = h("input", { class: "wide", value: "restock", testid: "admin-restock-reason", "aria-label": "Reason" });
    return h("tr", { testid: "admin-product", "data-product-id": p.id },
      h("td", {}, p.name, h("div", { class: "muted" }, p.sku + " · " + p.category)),
      h("td", { class: "num", testid: "admin-stock" }, String(p.stock)),
      h("td", { class: "actions" },
        h("form", { class: "inline", onsubmit: async (e) => {
          e.preventDefault();
          const r = await api("PATCH", "catalog/v1/products/" + encodeURIComponent(p.id), { price_cents: cents(price) });
          if (r.status !== 200) { flash(errorMessage(r), "error"); return; }
          flash(p.name + " now costs " + money(r.data.price_cents, r.data.currency) + ".");
          reload();
        } }, price, h("button", { type: "submit", class: "secondary", testid: "admin-price-save" }, "Set price")),
        h("form", { class: "inline", onsubmit: async (e) => {
          e.preventDefault();
          // One key per click: a retried request applies once.
          const r = await api("POST", "catalog/v1/products/" + encodeURIComponent(p.id) + "/stock-adjustments",
            { delta: parseInt(delta.value, 10), reason: reason.value.trim() }, { "Idempotency-Key": randomKey() });
          if (r.status !== 200) { flash(errorMessage(r), "error"); return; }
          flash(p.name + ": " + r.data.stock + " in stock.");
          reload();
        } }, delta, reason, h("button", { type: "submit", class: "secondary", testid: "admin-restock-submit" }, "Adjust stock")),
        h("button", { class: "secondary", testid: "admin-archive", onclick: async () => {
          const r = await api("DELETE", "catalog/v1/products/" + encodeURIComponent(p.id));
          if (r.status !== 204) { flash(errorMessage(r), "error"); return; }
          flash(p.name + " is archived.");
          reload();
        } }, "Archive")));
  });
  section.replaceChildren(h("h2", {}, "Products"), create,
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Product"), h("th", { class: "num" }, "Stock"), h("th", {}, "Change"))), h("tbody", {}, rows)));
}

async function adminOrders(section, status, cursor, tbody) {
  const q = "orders/v1/admin/orders?limit=20" + (status ? "&status=" + encodeURIComponent(status) : "") + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
  const res = await api("GET", q);
  if (res.status !== 200) { section.replaceChildren(h("h2", {}, "Orders"), h("div", { class: "notice" }, errorMessage(res))); return; }
  const reload = () => adminOrders(section, status);
  const rows = res.data.orders.map((o) => h("tr", { testid: "admin-order", "data-order-id": o.id },
    h("td", {}, h("code", {}, o.id), h("div", { class: "muted" }, "user " + o.user_id)),
    h("td", {}, new Date(o.created_at).toLocaleString()),
    h("td", {}, h("span", { class: "status " + o.status, testid: "admin-order-status" }, o.status.replace("_", " "))),
    h("td", { class: "num" }, money(o.total_cents, o.currency)),
    h("td", {}, o.status === "confirmed" ? h("button", { class: "secondary", testid: "admin-order-cancel",
      onclick: async (e) => { if (await cancelOrder(o.id, e.target)) reload(); } }, "Cancel and refund") : null)));
  if (tbody) { tbody.append(...rows); } else {
    tbody = h("tbody", {}, rows);
    const filter = h("select", { testid: "admin-order-filter", "aria-label": "Status", onchange: () => adminOrders(section, filter.value) },
      [["", "All statuses"], ["pending", "pending"], ["confirmed", "confirmed"], ["payment_failed", "payment failed"], ["cancelled", "cancelled"]]
        .map(([v, t]) => h("option", { value: v, selected: v === status }, t)));
    section.replaceChildren(h("h2", {}, "Orders"), h("div", { class: "toolbar" }, filter),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Order"), h("th", {}, "Placed"), h("th", {}, "Status"), h("th", { class: "num" }, "Total"), h("th", {}))), tbody));
  }
  const old = section.querySelector("[data-testid=admin-orders-more]");
  if (old) old.remove();
  if (res.data.next_cursor) {
    section.append(h("p", { testid: "admin-orders-more" }, h("button", { class: "secondary", onclick: () => adminOrders(section, status, res.data.next_cursor, tbody) }, "Load more")));
  }
}

function loginPage(render) {
  const error = h("div", { class: "notice", testid: "login-error", hidden: true });
  const form = h("form", { class: "stack", onsubmit: async (e) => {
    e.preventDefault();
    const res = await call("POST", "/session", { email: form.elements.email.value.trim(), password: form.elements.password.value });
    if (res.status !== 201) { error.textContent = errorMessage(res); error.hidden = false; return; }
    state.user = res.data.user;
    renderAccount();
    await refreshCartCount();
    flash("Welcome back, " + state.user.name + ".");
    const after = sessionStorage.getItem("after_login") || "#/";
    sessionStorage.removeItem("after_login");
    go(after === "#/login" || after === "#/register" ? "#/" : after);
  } },
    h("label", {}, "Email", h("input", { name: "email", type: "email", required: true, autocomplete: "email", testid: "login-email" })),
    h("label", {}, "Password", h("input", { name: "password", type: "password", required: true, autocomplete: "current-password", testid: "login-password" })),
    error, h("button", { type: "submit", testid: "login-submit" }, "Log in"),
    h("p", { class: "muted" }, "New here? ", h("a", { href: "#/register" }, "Create an account")));
  render(h("h1", {}, "Log in"), form);
}

function registerPage(render) {
  const error = h("div", { class: "notice", testid: "register-error", hidden: true });
  const form = h("form", { class: "stack", onsubmit: async (e) => {
    e.preventDefault();
    const email = form.elements.email.value.trim();
    const password = form.elements.password.value;
    const res = await api("POST", "auth/v1/users", { email, password, name: form.elements.name.value.trim() });
    if (res.status !== 201) { error.textContent = errorMessage(res); error.hidden = false; return; }
    const login = await call("POST", "/session", { email, password });
    if (login.status !== 201) { go("#/login"); return; }
    state.user = login.data.user;
    renderAccount();
    await refreshCartCount();
    flash("Welcome to shoplab, " + state.user.name + ".");
    go("#/");
  } },
    h("label", {}, "Name", h("input", { name: "name", required: true, autocomplete: "name", testid: "register-name" })),
    h("label", {}, "Email", h("input", { name: "email", type: "email", required: true, autocomplete: "email", testid: "register-email" })),
    h("label", {}, "Password (at least 10 characters)", h("input", { name: "password", type: "password", required: true, minlength: "10", autocomplete: "new-password", testid: "register-password" })),
    error, h("button", { type: "submit", testid: "register-submit" }, "Create account"));
  render(h("h1", {}, "Create an account"), form);
}

async function route() {
  const hash = location.hash || "#/";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const render = renderer();
  document.body.dataset.page = parts[0] || "products";
  try {
    switch (parts[0]) {
      case undefined: await productsPage(render, params); break;
      case "product": await productPage(render, parts[1]); break;
      case "cart": await cartPage(render); break;
      case "checkout": await checkoutPage(render); break;
      case "order": await orderPage(render, parts[1]); break;
      case "orders": await ordersPage(render); break;
      case "admin": await adminPage(render); break;
      case "login": loginPage(render); break;
      case "register": registerPage(render); break;
      default: render(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the shop")));
    }
  } finally {
    if (render.current()) document.body.dataset.ready = hash;
  }
}

window.addEventListener("hashchange", () => { flash(""); route(); });
window.addEventListener("DOMContentLoaded", async () => {
  await loadSession();
  await route();
});

/*
 * The local Kommo host: plays Kommo's widget platform for the built widget, as the platform's
 * documentation describes it (../shared/reference/kommo-widget.md; docs/widget.md "The host
 * page"). It sets the `APP` globals, gives RequireJS the modules Kommo's page provides
 * (jquery, underscore, moment, twigjs, text, lib/components/base/modal), loads the widget's
 * script.js from the archive, mixes the platform's methods into the widget (`self.render`,
 * `self.$authorizedAjax`, `self.list_selected` ...) and calls its callbacks for the area.
 * Where the platform is not documented this file makes a choice and notes.html says so.
 * This is the host's own code, never shipped in the widget archive.
 */
/* global requirejs, define */
(function () {
  "use strict";

  var ctx = window.HOST_CONTEXT;
  // twig.js's browser build names Node's `global` as its root object.
  window.global = window.global || window;
  var widgetInfo = ctx.widget;
  var code = widgetInfo.code;
  var manifest = widgetInfo.manifest || { widget: {}, locations: [] };
  var locales = (manifest.widget && manifest.widget.locale) || ["en"];
  var lang = pickLang();

  function pickLang() {
    if (ctx.lang) return ctx.lang;
    var stored = window.localStorage.getItem("host_lang");
    if (stored) return stored;
    var nav = (navigator.language || "en").slice(0, 2).toLowerCase();
    return nav;
  }

  requirejs.config({
    paths: {
      jquery: "/vendor/jquery",
      underscore: "/vendor/underscore",
      moment: "/vendor/moment",
      twigjs: "/vendor/twig",
      text: "/vendor/text",
    },
    // The widget's own files: `widget_<code>/script` is its script.js, and its relative ids
    // (./templates/x.twig with the text plugin, ./lib/y) resolve inside the archive.
    urlArgs: function (id, url) {
      return url.indexOf("/upl/") === 0 ? (url.indexOf("?") === -1 ? "?" : "&") + "v=" + widgetInfo.version : "";
    },
    waitSeconds: 20,
  });
  var widgetModule = "widget_" + code;
  var cfgPaths = {};
  cfgPaths[widgetModule] = widgetInfo.path;
  requirejs.config({ paths: cfgPaths });

  // ---------------------------------------------------------------- small helpers
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "html") node.innerHTML = attrs[k];
      else if (k.indexOf("on") === 0) node.addEventListener(k.slice(2), attrs[k]);
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      if (c) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function hostPost(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    }).then(function (r) {
      return r.json();
    });
  }

  function hostLog(text) {
    var log = document.getElementById("host-log");
    if (!log) return;
    var line = el("div", { class: "host-log__line", text: new Date().toLocaleTimeString() + "  " + text });
    log.insertBefore(line, log.firstChild);
  }

  function pageUrl(path, extra) {
    var q = new URLSearchParams(extra || {});
    q.set("lang", lang);
    return path + "?" + q.toString();
  }

  // ---------------------------------------------------------------- the page's frame
  // The host's own words in Russian, as an amoCRM account shows its interface (the widget's
  // words come from its i18n files).
  var HOST_RU = {
    "Mailer on a local Kommo": "Mailer в локальном Kommo",
    "Lead card": "Карточка сделки",
    "Contact card": "Карточка контакта",
    "Company card": "Карточка компании",
    Leads: "Сделки",
    Contacts: "Контакты",
    "Settings → Integrations": "Настройки → Интеграции",
    "Leads → Digital pipeline": "Сделки → Цифровая воронка",
    "Salesbot designer": "Конструктор Salesbot",
    Integrations: "Интеграции",
    "Mailer settings": "Настройки Mailer",
    "Digital pipeline": "Цифровая воронка",
    Salesbot: "Salesbot",
    "user ": "пользователь ",
    "language ": "язык ",
    "Host log (what the widget asked of the platform)": "Журнал страницы (что виджет просил у платформы)",
    More: "Ещё",
    selected: "выбрано",
    Save: "Сохранить",
    Done: "Готово",
    "Move the lead to this stage": "Переместить сделку на этот этап",
    "+ Add trigger: ": "+ Добавить триггер: ",
    "Save the bot": "Сохранить бота",
    Contacts_heading: "Контакты",
    Feed: "Лента",
    Note: "Примечание",
    "No events yet (the local host keeps no feed).": "Событий пока нет (локальная страница не ведёт ленту).",
    Stage: "Этап",
    Contact: "Контакт",
    Name: "Название",
  };
  function T(text) {
    return lang === "ru" && HOST_RU[text] ? HOST_RU[text] : text;
  }
  var root = document.getElementById("host-root");
  var areaTitles = {
    index: T("Mailer on a local Kommo"),
    lcard: T("Lead card"),
    ccard: T("Contact card"),
    comcard: T("Company card"),
    llist: T("Leads"),
    clist: T("Contacts"),
    settings: T("Settings → Integrations"),
    advanced_settings: "Mailer",
    digital_pipeline: T("Leads → Digital pipeline"),
    salesbot_designer: T("Salesbot designer"),
  };

  function frame() {
    var nav = [
      [T("Leads"), pageUrl("/leads/list/")],
      [T("Contacts"), pageUrl("/contacts/list/")],
      [T("Lead card"), pageUrl("/leads/detail/24000001")],
      [T("Contact card"), pageUrl("/contacts/detail/25000001")],
      [T("Company card"), pageUrl("/companies/detail/26000001")],
      [T("Integrations"), pageUrl("/settings/widgets/")],
      [T("Mailer settings"), pageUrl("/settings/widgets/" + code + "/")],
      [T("Digital pipeline"), pageUrl("/settings/pipeline/leads/" + ctx.pipeline.id + "/")],
      [T("Salesbot"), pageUrl("/salesbot/designer/")],
    ];
    var menu = el("nav", { class: "host-menu" }, [
      el("a", { class: "host-menu__logo", href: pageUrl("/"), text: "kommo·local" }),
    ].concat(nav.map(function (n) {
      return el("a", { class: "host-menu__item", href: n[1], text: n[0] });
    })));
    var langSelect = el("select", { id: "host-lang", "aria-label": "language" });
    locales.concat(locales.indexOf(lang) === -1 ? [lang] : []).forEach(function (lc) {
      var o = el("option", { value: lc, text: lc });
      if (lc === lang) o.selected = true;
      langSelect.appendChild(o);
    });
    langSelect.addEventListener("change", function () {
      window.localStorage.setItem("host_lang", langSelect.value);
      var q = new URLSearchParams(location.search);
      q.set("lang", langSelect.value);
      location.search = q.toString();
    });
    var userSelect = el("select", { id: "host-user", "aria-label": "user" });
    ctx.users.forEach(function (u) {
      var key = u.is_admin ? "admin" : "manager";
      var o = el("option", { value: key, text: u.name + (u.is_admin ? " (admin)" : " (manager)") });
      if (u.id === ctx.user.id) o.selected = true;
      userSelect.appendChild(o);
    });
    userSelect.addEventListener("change", function () {
      var q = new URLSearchParams(location.search);
      q.set("user", userSelect.value);
      location.search = q.toString();
    });
    var top = el("header", { class: "host-top" }, [
      el("h1", { class: "host-top__title", text: areaTitles[ctx.area] || ctx.area }),
      el("span", { class: "host-top__account", text: ctx.account.subdomain + ".kommo.com (local)" }),
      el("label", {}, [T("user "), userSelect]),
      el("label", {}, [T("language "), langSelect]),
    ]);
    var work = el("main", { id: "work_area", class: "host-work" });
    var log = el("section", { class: "host-log-wrap" }, [
      el("h3", { text: T("Host log (what the widget asked of the platform)") }),
      el("div", { id: "host-log", class: "host-log" }),
    ]);
    root.appendChild(menu);
    root.appendChild(el("div", { class: "host-main" }, [top, work, log]));
    root.appendChild(el("div", { id: "host-toasts", class: "host-toasts" }));
    return work;
  }

  var work = frame();

  function fatal(text) {
    work.appendChild(el("div", { class: "host-error", id: "host-error", text: text }));
  }

  if (ctx.vendor_missing) {
    fatal("The host's libraries are missing: " + ctx.vendor_missing);
    return;
  }

  if (ctx.area === "index") {
    renderIndex();
    return;
  }

  if (widgetInfo.missing) {
    fatal("No widget to host: " + widgetInfo.missing);
    return;
  }

  requirejs.onError = function (error) {
    fatal("RequireJS could not load " + (error.requireModules || []).join(", ") + ": " + error.message);
  };

  // ---------------------------------------------------------------- AMD modules of Kommo's page
  define("lib/components/base/modal", ["jquery"], function ($) {
    // Kommo's Modal (reference §4): new Modal({class_name, init($body), destroy}).
    function Modal(options) {
      var self = this;
      this.options = options || {};
      this.$overlay = $('<div class="modal host-modal-overlay"></div>').addClass(this.options.class_name || "");
      this.$body = $('<div class="modal-body"></div>');
      this.$overlay.append($('<div class="modal-scroller"></div>').append(this.$body)).appendTo(document.body);
      this.$body.on("click", ".modal-body__close", function () {
        self.destroy();
      });
      this.$overlay.on("click", function (e) {
        if (e.target === self.$overlay[0] && !self.options.disable_overlay_click) self.destroy();
      });
      if (typeof this.options.init === "function") this.options.init.call(this, this.$body);
      hostLog("Modal opened" + (this.options.class_name ? " (" + this.options.class_name + ")" : ""));
    }
    Modal.prototype.destroy = function () {
      if (this.destroyed) return;
      this.destroyed = true;
      if (typeof this.options.destroy === "function" && this.options.destroy.call(this) === false) {
        this.destroyed = false;
        return;
      }
      this.$overlay.remove();
    };
    return Modal;
  });

  // twig.js asks for Node's fs and path when it finds an AMD `require`: empty stand-ins,
  // loaded before it (it loads templates over HTTP in a browser).
  define("fs", [], {});
  define("path", [], {});
  requirejs(["fs", "path"], function () {
    requirejs(["jquery", "underscore", "twigjs", "moment"], begin);
  });
  function begin($, _, TwigModule) {
    var Twig = TwigModule && TwigModule.twig ? TwigModule : window.Twig;
    window.$ = window.jQuery = $;
    window._ = _;
    setupApp($);
    loadWidget($, _, Twig);
  }

  // ---------------------------------------------------------------- APP globals
  function setupApp($) {
    var card = ctx.card;
    var baseEntity = card ? card.entity : ctx.list ? ctx.list.entity : "";
    var widgetsArea = {
      lcard: "leads_card",
      ccard: "contacts_card",
      comcard: "companies_card",
      llist: "leads",
      clist: "contacts",
      settings: "widgetsSettings",
      advanced_settings: "advanced-settings:" + code,
      digital_pipeline: "digital_pipeline",
      salesbot_designer: "salesbot_designer",
    }[ctx.area];
    var constants = {
      user: { id: ctx.user.id, login: ctx.user.login, name: ctx.user.name, amojo_id: "local-" + ctx.user.id, uuid: "local-" + ctx.user.id },
      account: { id: ctx.account.id, name: ctx.account.name, subdomain: ctx.account.subdomain, currency: ctx.account.currency, language: lang },
      managers: ctx.users.reduce(function (all, u) {
        all[u.id] = { id: u.id, title: u.name, login: u.login, active: true, is_admin: u.is_admin ? "Y" : "N" };
        return all;
      }, {}),
      groups: { group_0: "Sales" },
      task_types: { 1: { id: 1, option: "Follow-up" }, 2: { id: 2, option: "Meeting" } },
      user_rights: { is_admin: ctx.user.is_admin },
    };
    var toasts = document.getElementById("host-toasts");
    function toast(kind, header, text) {
      var node = el("div", { class: "host-toast host-toast_" + kind, role: kind === "error" ? "alert" : "status" }, [
        el("b", { text: header || "" }),
        el("div", { text: text || "" }),
      ]);
      toasts.appendChild(node);
      setTimeout(function () {
        node.remove();
      }, 8000);
      hostLog("notification (" + kind + "): " + (header || "") + " " + (text || ""));
    }
    var APP = {
      lang_id: lang,
      constant: function (name) {
        return constants[name];
      },
      data: {
        current_card: card
          ? { id: card.id, element_type: { leads: 2, contacts: 1, companies: 3 }[card.entity], model: { attributes: { id: card.id, name: card.name, price: card.price } } }
          : false,
        current_list: ctx.list ? { rows: ctx.list.rows.map(function (r) { return { id: r.id, name: r.name, checked: false }; }) } : false,
        current_view: { $el: $(work) },
        current_entity: baseEntity,
      },
      getBaseEntity: function () {
        return baseEntity;
      },
      isCard: function () {
        return !!card;
      },
      getWidgetsArea: function () {
        return widgetsArea;
      },
      element_types: { contacts: 1, leads: 2, companies: 3, customers: 12, contact: 1, lead: 2, company: 3 },
      cf_types: { text: 1, numeric: 2, checkbox: 3, select: 4, multiselect: 5, date: 6, url: 7, multitext: 8, textarea: 9 },
      notifications: {
        show_message: function (m) { toast("message", m && m.header, m && m.text); },
        show_message_error: function (m) { toast("error", m && m.header, m && m.text); },
        show_notification: function (m) { toast(m && m.type === "error" ? "error" : "message", m && m.text && m.text.header, m && m.text && m.text.text); },
        add_error: function (m) { toast("error", m && m.header, m && m.text); },
        add_call: function (m) { toast("message", m && m.header, m && m.text); },
      },
      sdk: { showUserStatus: function () {} },
      widgets: {},
    };
    window.APP = APP;
    window.AMOCRM = APP; // the deprecated twin (reference §4)
  }

  // ---------------------------------------------------------------- the widget object
  var SYSTEM_TEMPLATES = {
    "/tmpl/controls/button.twig":
      '<button type="button" class="button-input {{ class_name }}"{% if id %} id="{{ id }}"{% endif %}{% if disabled %} disabled{% endif %}>{{ text }}</button>',
    "/tmpl/controls/input.twig":
      '<input type="{{ type|default("text") }}" class="text-input {{ class_name }}" name="{{ name }}" value="{{ value }}" placeholder="{{ placeholder }}"{% if id %} id="{{ id }}"{% endif %}>',
    "/tmpl/controls/textarea.twig":
      '<textarea class="textarea-autosize {{ class_name }}" name="{{ name }}" placeholder="{{ placeholder }}"{% if disabled %} disabled{% endif %}{% if readonly %} readonly{% endif %}>{{ value }}</textarea>',
    "/tmpl/controls/select.twig":
      '<select class="control--select {{ class_name }}" name="{{ name }}">{% for item in items %}<option value="{{ item.id }}"{% if item.id == selected %} selected{% endif %}>{{ item.option }}</option>{% endfor %}</select>',
    "/tmpl/controls/checkbox.twig":
      '<label class="control-checkbox {{ class_name }}"><input type="checkbox" name="{{ name }}" value="{{ value }}"{% if checked %} checked{% endif %}> {{ text }}</label>',
    "/tmpl/controls/radio.twig":
      '<label class="control-radio {{ class_name }}"><input type="radio" name="{{ name }}" value="{{ value }}"{% if checked %} checked{% endif %}> {{ text }}</label>',
    "/tmpl/controls/switcher.twig":
      '<label class="switcher {{ class_name }}"><input type="checkbox" name="{{ name }}"{% if checked %} checked{% endif %}><span class="switcher__label">{{ text }}</span></label>',
    "/tmpl/controls/date_field.twig":
      '<input type="date" class="date_field {{ class_name }}" name="{{ name }}" value="{{ value }}">',
  };

  function loadWidget($, _, Twig) {
    // Kommo adds the widget's style.css to the page (reference §1.1).
    $("<link>", { rel: "stylesheet", href: widgetInfo.path + "/style.css?v=" + widgetInfo.version }).appendTo("head");
    var langsUrl = widgetInfo.path + "/i18n/" + lang + ".json?v=" + widgetInfo.version;
    var fallbackUrl = widgetInfo.path + "/i18n/en.json?v=" + widgetInfo.version;
    $.getJSON(langsUrl)
      .then(null, function () {
        hostLog("no i18n/" + lang + ".json in the archive; English instead");
        return $.getJSON(fallbackUrl);
      })
      .then(
        function (langs) {
          requirejs(
            [widgetModule + "/script"],
            function (Factory) {
              start($, _, Twig, Factory, langs);
            },
            function (error) {
              fatal("The widget's script.js did not load: " + error);
            }
          );
        },
        function () {
          fatal("The archive has no i18n/" + lang + ".json nor i18n/en.json");
        }
      );
  }

  function platformMethods($, _, Twig, langs) {
    var settings = $.extend({}, widgetInfo.settings, { widget_code: code });
    var params = $.extend({}, settings, {
      path: widgetInfo.path,
      widget_code: code,
      version: widgetInfo.version,
      status: "installed",
      active: "Y",
      images_path: widgetInfo.path + "/images",
    });
    var actions = {};
    var sources = {};
    var methods = {
      params: params,
      langs: langs,
      system: function () {
        return {
          area: ctx.area,
          amouser_id: ctx.user.id,
          amouser: ctx.user.login,
          amohash: "local-host-no-hash",
          subdomain: ctx.account.subdomain,
          domain: ctx.account.subdomain + ".kommo.com",
          server: "kommo",
          displayed_count: ctx.list ? ctx.list.rows.length : 0,
          displayed_count_by_area: {},
        };
      },
      get_settings: function () {
        return settings;
      },
      set_settings: function (values) {
        $.extend(settings, values);
        $.extend(params, values);
        hostLog("set_settings " + JSON.stringify(values));
      },
      get_version: function () {
        return widgetInfo.version;
      },
      get_install_status: function () {
        return "installed";
      },
      set_status: function (status) {
        hostLog("set_status " + status);
      },
      i18n: function (key) {
        return this.langs ? this.langs[key] : undefined;
      },
      set_lang: function (obj) {
        this.langs = obj;
      },
      get_accounts_current: function () {
        return window.APP.constant("account");
      },
      get_pipeline_id: function () {
        return ctx.pipeline.id;
      },
      render: function (data, values) {
        data = data || {};
        if (data.href) {
          var url = (data.base_path || "") + data.href;
          Twig.twig({
            href: url + (url.indexOf("?") === -1 ? "?v=" : "&v=") + widgetInfo.version,
            async: true,
            load: function (template) {
              if (typeof data.load === "function") data.load(template);
            },
            error: function (e) {
              hostLog("render: could not load " + url + ": " + e);
            },
          });
          return "";
        }
        var source = data.data;
        if (data.ref) {
          source = SYSTEM_TEMPLATES[data.ref];
          if (source === undefined) {
            hostLog("render: the host has no system template " + data.ref);
            return "";
          }
        }
        return Twig.twig({ data: source || "" }).render(values || {});
      },
      render_template: function (options, values) {
        options = options || {};
        var body = options.body || "";
        if (options.render) body = Twig.twig({ data: options.render }).render(values || {});
        var caption = options.caption || {};
        var $panel = $("#host-widgets-panel");
        $panel.find("#" + code).remove();
        var $block = $('<div class="card-widgets__widget"></div>').attr("id", code);
        var $caption = $('<div class="card-widgets__widget__caption"></div>').addClass(caption.class_name || "");
        $caption.append($("<img>").attr({ src: widgetInfo.path + "/images/logo_min.png", alt: "" }));
        $caption.append($("<span></span>").html(caption.html || (this.langs && this.langs.widget && this.langs.widget.name) || code));
        $block.append($caption).append($('<div class="card-widgets__widget__body"></div>').html(body));
        $panel.append($block);
        hostLog("render_template in the right panel");
        return true;
      },
      list_selected: function () {
        var selected = [];
        $(".host-list__check:checked").each(function () {
          var row = _.find(ctx.list.rows, function (r) { return String(r.id) === this.value; }, this);
          if (row) selected.push({ id: row.id, type: row.type, emails: row.emails.slice(), phones: row.phones.slice() });
        });
        return {
          selected: selected,
          summary: {
            items: selected.length,
            emails: selected.reduce(function (n, s) { return n + s.emails.length; }, 0),
            phones: selected.reduce(function (n, s) { return n + s.phones.length; }, 0),
          },
        };
      },
      widgetsOverlay: function (show) {
        $("#host-overlay").toggleClass("host-overlay_open", !!show);
      },
      add_action: function (type, handler) {
        actions[type] = handler;
        hostLog("add_action " + type);
        $(document).trigger("host:actions");
      },
      add_source: function (type, handler, text) {
        sources[type] = { handler: handler, text: text || type };
        hostLog("add_source " + type);
        $(document).trigger("host:sources");
      },
      get_current_card_contacts_data: function () {
        return Promise.resolve(ctx.card ? JSON.parse(JSON.stringify(ctx.card.contacts)) : []);
      },
      crm_post: function (url, data, success, dataType, error) {
        return $.ajax({
          url: "/_host/crm_post",
          method: "POST",
          contentType: "application/json",
          data: JSON.stringify({ url: url, data: data || {} }),
          dataType: dataType || "json",
        }).then(success, error);
      },
      $authorizedAjax: function (options) {
        // Kommo adds X-Auth-Token, a one-time HS256 JWT for the current user (reference §5);
        // the host asks its local-only endpoint for a fresh one per call.
        var deferred = $.Deferred();
        var opts = $.extend({}, options);
        $.ajax({
          url: "/_host/token",
          method: "POST",
          contentType: "application/json",
          data: JSON.stringify({ user_id: ctx.user.id }),
          dataType: "json",
        }).then(
          function (answer) {
            opts.headers = $.extend({}, options && options.headers, { "X-Auth-Token": answer.token });
            hostLog("$authorizedAjax " + (opts.method || opts.type || "GET") + " " + opts.url);
            $.ajax(opts)
              .done(function () {
                deferred.resolveWith(this, arguments);
              })
              .fail(function (xhr) {
                hostLog("$authorizedAjax failed: " + xhr.status + " " + (xhr.responseText || "").slice(0, 200));
                deferred.rejectWith(this, arguments);
              });
          },
          function (xhr) {
            deferred.rejectWith(this, [xhr, "error", "the host could not mint a token"]);
          }
        );
        return deferred.promise();
      },
    };
    return { methods: methods, actions: actions, sources: sources };
  }

  function callback(widget, name) {
    var callbacks = widget.callbacks || {};
    var parts = name.split(".");
    var fn = parts.length === 2 ? (callbacks[parts[0]] && callbacks[parts[0]][parts[1]]) || callbacks[name] : callbacks[name];
    if (typeof fn !== "function") {
      hostLog("the widget has no callback " + name);
      return undefined;
    }
    hostLog("callback " + name);
    try {
      return fn.apply(widget, Array.prototype.slice.call(arguments, 2));
    } catch (error) {
      hostLog("callback " + name + " threw: " + error);
      console.error(error);
      throw error;
    }
  }

  function lifecycle(widget) {
    // render → init → bind_actions, each must return true for the next (reference §1.3, §2).
    if (callback(widget, "render") !== true) return hostLog("render did not return true: init and bind_actions not called"), false;
    if (callback(widget, "init") !== true) return hostLog("init did not return true: bind_actions not called"), false;
    callback(widget, "bind_actions");
    return true;
  }

  function start($, _, Twig, Factory, langs) {
    if (typeof Factory !== "function") {
      fatal("script.js did not define a constructor (a RequireJS module returning function CustomWidget)");
      return;
    }
    var platform = platformMethods($, _, Twig, langs);
    // Kommo mixes its Widget object into the constructor; the host puts the methods on its prototype.
    _.extend(Factory.prototype, platform.methods);
    var widget = new Factory();
    if (!widget || !widget.callbacks) widget = widget || {};
    window.HOST_WIDGET = widget;
    if (ctx.area === "advanced_settings") {
      var title = lookup(manifest.advanced && manifest.advanced.title) || code;
      document.querySelector(".host-top__title").textContent = title;
    }
    var area = ctx.area;
    if (area === "lcard" || area === "ccard" || area === "comcard") renderCard($, widget, platform);
    else if (area === "llist" || area === "clist") renderList($, widget);
    else if (area === "settings") renderSettings($, widget, platform);
    else if (area === "advanced_settings") renderAdvanced($, widget);
    else if (area === "digital_pipeline") renderPipeline($, widget);
    else if (area === "salesbot_designer") renderSalesbot($, widget, platform);
    document.body.setAttribute("data-host-ready", "1");
  }

  // ---------------------------------------------------------------- areas
  function renderIndex() {
    var links = [
      ["Lead card: " + "Поставка оборудования для ООО «Ромашка»", "/leads/detail/24000001"],
      ["Lead card: Website redesign for Blue Harbor", "/leads/detail/24000002"],
      ["Contact card: Olga Smirnova", "/contacts/detail/25000002"],
      ["Company card: ООО «Ромашка»", "/companies/detail/26000001"],
      ["Leads list (select leads, then More → the widget)", "/leads/list/"],
      ["Contacts list", "/contacts/list/"],
      ["Settings → Integrations (the widget's settings modal)", "/settings/widgets/"],
      ["Advanced settings (mailboxes, templates, triggers, letters …)", "/settings/widgets/" + code + "/"],
      ["Digital pipeline (the widget's action on a stage)", "/settings/pipeline/leads/" + ctx.pipeline.id + "/"],
      ["Salesbot designer (the widget's step)", "/salesbot/designer/"],
    ];
    work.appendChild(el("p", { text: "The built widget (build/widget/widget.zip) runs here against the local backend " + ctx.api_url + ". Emails arrive in the SMTP sink: " + ctx.sink_url }));
    if (widgetInfo.missing) work.appendChild(el("div", { class: "host-error", text: "No widget to host: " + widgetInfo.missing }));
    work.appendChild(el("ul", { class: "host-index" }, links.map(function (l) {
      return el("li", {}, [el("a", { href: pageUrl(l[1]), text: l[0] })]);
    })));
  }

  function renderCard($, widget, platform) {
    var card = ctx.card;
    if (!card) {
      fatal("No such entity in the Kommo stand-in");
      return;
    }
    var $work = $(work);
    var $layout = $('<div class="host-card"></div>').appendTo($work);
    var $left = $('<div class="host-card__left"></div>').appendTo($layout);
    var $feed = $('<div class="host-card__feed"></div>').appendTo($layout);
    $('<aside id="host-widgets-panel" class="card-widgets host-card__right"></aside>').appendTo($layout);
    $left.append($('<h2 class="host-card__name"></h2>').text(card.name));
    if (card.status) $left.append($('<div class="host-card__status"></div>').text(card.status + (card.price ? " · " + card.price + " " + (ctx.account.currency || "") : "")));
    card.fields.forEach(function (f) {
      $left.append($('<div class="host-card__field"></div>').append($("<span></span>").text(f.name + ": "), $("<b></b>").text(f.values.join(", "))));
    });
    var $people = $('<div class="host-card__contacts"><h3>' + T("Contacts") + "</h3></div>").appendTo($left);
    card.contacts.forEach(function (c) {
      var $c = $('<div class="host-card__contact"></div>').append($("<b></b>").text(c.name));
      c.emails.forEach(function (address) {
        $c.append($('<div class="host-card__email"></div>').append($('<a href="#" class="host-email"></a>').text(address).attr("data-value", address)));
      });
      $people.append($c);
    });
    // The e-mail context menu of a card (add_action 'email'): Kommo's menu item, here a click.
    $left.on("click", ".host-email", function (e) {
      e.preventDefault();
      var handler = platform.actions.email;
      if (handler) {
        hostLog("e-mail action for " + $(this).attr("data-value"));
        handler.call(widget, { value: $(this).attr("data-value") });
      }
    });
    // The feed's composer: Kommo's own note/chat tabs, plus a tab for each add_source type.
    $feed.append("<h3>" + T("Feed") + "</h3>")
    $feed.append($('<div class="host-feed__empty"></div>').text(T("No events yet (the local host keeps no feed).")));
    var $composer = $('<div class="feed-compose host-composer"><div class="feed-compose__tabs"><span class="feed-compose__tab feed-compose__tab_active">' + T("Note") + '</span></div><div class="feed-compose__body"><textarea placeholder="' + T("Note") + '"></textarea></div></div>').appendTo($feed);
    function drawSources() {
      var $tabs = $composer.find(".feed-compose__tabs");
      Object.keys(platform.sources).forEach(function (type) {
        if ($tabs.find('[data-source="' + type + '"]').length) return;
        $('<span class="feed-compose__tab"></span>').text(platform.sources[type].text).attr("data-source", type).appendTo($tabs);
      });
    }
    $composer.on("click", ".feed-compose__tab[data-source]", function () {
      var type = $(this).attr("data-source");
      $composer.find(".feed-compose__tab").removeClass("feed-compose__tab_active");
      $(this).addClass("feed-compose__tab_active");
      var $body = $composer.find(".feed-compose__body").empty();
      platform.sources[type].handler.call(widget, $body);
    });
    $(document).on("host:sources", drawSources);
    lifecycle(widget);
    drawSources();
  }

  function renderList($, widget) {
    var list = ctx.list;
    var $work = $(work);
    var $bar = $('<div class="host-list__bar"></div>').appendTo($work);
    var $count = $('<span class="host-list__count"></span>').text("0 " + T("selected")).appendTo($bar);
    var $more = $('<button type="button" class="button-input host-list__more" id="host-list-more" disabled></button>').text(T("More")).appendTo($bar);
    var $menu = $('<div class="host-list__menu" id="host-list-menu" hidden></div>').appendTo($bar);
    var widgetName = (widget.langs && widget.langs.widget && widget.langs.widget.name) || code;
    $('<button type="button" class="host-list__menu-item" id="host-list-widget"></button>').text(widgetName).appendTo($menu);
    var $table = $('<table class="host-list"><thead><tr><th><input type="checkbox" id="host-list-all" aria-label="select all"></th><th>' + T("Name") + "</th><th>" + T("Stage") + "</th><th>" + T("Contact") + '</th><th>E-mail</th></tr></thead><tbody></tbody></table>').appendTo($work);
    list.rows.forEach(function (r) {
      $("<tr></tr>")
        .append($("<td></td>").append($('<input type="checkbox" class="host-list__check">').val(r.id).attr("aria-label", r.name)))
        .append($("<td></td>").text(r.name))
        .append($("<td></td>").text(r.status))
        .append($("<td></td>").text(r.contact))
        .append($("<td></td>").text(r.emails.join(", ")))
        .appendTo($table.find("tbody"));
    });
    function update() {
      var n = $(".host-list__check:checked").length;
      $count.text(n + " " + T("selected"));
      $more.prop("disabled", n === 0);
    }
    $table.on("change", ".host-list__check", update);
    $("#host-list-all").on("change", function () {
      $(".host-list__check").prop("checked", this.checked);
      update();
    });
    $more.on("click", function () {
      $menu.prop("hidden", !$menu.prop("hidden"));
    });
    // The right-hand widget panel a list opens (widgetsOverlay), with render_template's block.
    $('<div id="host-overlay" class="host-overlay"><aside id="host-widgets-panel" class="card-widgets host-overlay__panel"><button type="button" class="host-overlay__close" aria-label="close">×</button></aside></div>').appendTo(document.body);
    $("#host-overlay").on("click", ".host-overlay__close", function () {
      widget.widgetsOverlay(false);
    });
    $("#host-list-widget").on("click", function () {
      $menu.prop("hidden", true);
      widget.widgetsOverlay(true);
      callback(widget, (list.entity === "leads" ? "leads" : "contacts") + ".selected");
    });
    lifecycle(widget);
  }

  function settingsFields($, values) {
    var fields = manifest.settings || {};
    var names = (widgetLangs().settings) || {};
    var $wrap = $('<div class="widget_settings_block__fields" id="widget_settings__fields_wrapper"></div>');
    Object.keys(fields).forEach(function (key) {
      var f = fields[key];
      var label = lookup(f.name) || names[key] || key;
      var type = f.type === "pass" ? "password" : "text";
      var $row = $('<div class="widget_settings_block__item_field"></div>');
      $row.append($('<div class="widget_settings_block__title_field"></div>').text(label));
      if (f.type === "custom") {
        $row.append($('<div></div>').attr("id", code + "_custom_content"));
        $row.append($('<input type="hidden">').attr({ id: code + "_custom", name: key }).val(values[key] || ""));
      } else {
        $row.append($('<input class="text-input">').attr({ type: type, name: key }).val(values[key] || ""));
      }
      $wrap.append($row);
    });
    return $wrap;
  }

  var currentLangs = null;
  function widgetLangs() {
    return currentLangs || (window.HOST_WIDGET && window.HOST_WIDGET.langs) || {};
  }
  function lookup(key) {
    // Manifest names are i18n keys ("settings.api_url"): Kommo shows the translation.
    if (!key) return "";
    var node = widgetLangs();
    key.split(".").forEach(function (k) {
      node = node && typeof node === "object" ? node[k] : undefined;
    });
    return typeof node === "string" ? node : "";
  }

  function renderSettings($, widget) {
    var $work = $(work);
    var name = lookup(manifest.widget && manifest.widget.name) || code;
    var $grid = $('<div class="host-integrations"></div>').appendTo($work);
    var $tile = $('<button type="button" class="host-integrations__tile" id="host-widget-tile"></button>')
      .append($("<img>").attr({ src: widgetInfo.path + "/images/logo.png", alt: "" }))
      .append($("<span></span>").text(name))
      .appendTo($grid);
    lifecycle(widget);
    $tile.on("click", function () {
      openSettingsModal($, widget, name);
    });
  }

  function openSettingsModal($, widget, name) {
    requirejs(["lib/components/base/modal"], function (Modal) {
      new Modal({
        class_name: "widget-settings " + code,
        init: function ($body) {
          var $head = $('<div class="widget_settings_block__head"></div>');
          $head.append($("<h2></h2>").text(name));
          $head.append($('<div class="widget_settings_block__descr"></div>').text(lookup(manifest.widget && manifest.widget.short_description)));
          var $fields = settingsFields($, widgetInfo.settings);
          var $save = $('<button type="button" class="button-input button-input_blue" id="host-settings-save"></button>').text(T("Save"));
          var $close = $('<span class="modal-body__close" role="button" aria-label="close">×</span>');
          $body.trigger("modal:loaded").append($close, $head, $fields, $('<div class="widget_settings_block__controls"></div>').append($save)).trigger("modal:centrify");
          callback(widget, "settings", $body);
          var modal = this;
          $save.on("click", function () {
            var fields = {};
            $fields.find("input[name]").each(function () {
              fields[this.name] = $(this).val();
            });
            var result = callback(widget, "onSave", { active: "Y", fields: fields });
            Promise.resolve(result).then(function (ok) {
              if (ok === false) return hostLog("onSave refused the save");
              return hostPost("/_host/settings", { fields: fields }).then(function () {
                hostLog("settings saved " + JSON.stringify(fields));
                window.APP.notifications.show_message({ header: name, text: "Saved" });
                modal.destroy();
              });
            });
          });
        },
      });
    });
  }

  function renderAdvanced($, widget) {
    $('<div class="host-advanced"></div>').attr("id", "work-area-" + code).appendTo(work);
    if (lifecycle(widget)) callback(widget, "advancedSettings");
  }

  function renderPipeline($, widget) {
    var pipeline = ctx.pipeline;
    var dp = manifest.dp || { settings: {} };
    var name = lookup(manifest.widget && manifest.widget.name) || code;
    var $board = $('<div class="host-pipeline" id="host-pipeline"></div>').appendTo(work);
    lifecycle(widget);
    pipeline.statuses.forEach(function (s) {
      if (s.id === 142 || s.id === 143) return;
      var $col = $('<div class="host-pipeline__stage"></div>').attr("data-status", s.id).css("border-top-color", s.color);
      $col.append($("<h3></h3>").text(s.name));
      var saved = pipeline.actions[String(s.id)];
      if (saved) {
        var $action = $('<div class="digital-pipeline__short-task host-pipeline__action"></div>').addClass("digital-pipeline__short-task_widget-style_" + code);
        $action.append($("<b></b>").text(name));
        Object.keys(saved).forEach(function (k) {
          if (k === "secret") return;
          $action.append($('<div class="host-pipeline__setting"></div>').text((lookup((dp.settings[k] || {}).name) || k) + ": " + saved[k]));
        });
        $action.append($('<button type="button" class="button-input host-pipeline__edit">Edit</button>'));
        var $run = $('<div class="host-pipeline__run"></div>');
        var $lead = $('<select class="host-pipeline__lead" aria-label="lead"></select>');
        ctx.leads_brief.forEach(function (l) {
          $lead.append($("<option></option>").val(l.id).text(l.name));
        });
        $run.append($lead, $('<button type="button" class="button-input button-input_blue host-pipeline__move"></button>').text(T("Move the lead to this stage")));
        $action.append($run, $('<pre class="host-pipeline__answer"></pre>'));
        $col.append($action);
      } else {
        $col.append($('<button type="button" class="button-input host-pipeline__add"></button>').text(T("+ Add trigger: ") + name));
      }
      $board.append($col);
    });
    $board.on("click", ".host-pipeline__add, .host-pipeline__edit", function () {
      var statusId = Number($(this).closest(".host-pipeline__stage").attr("data-status"));
      openDpModal($, widget, statusId, pipeline.actions[String(statusId)] || {});
    });
    $board.on("click", ".host-pipeline__move", function () {
      var $stage = $(this).closest(".host-pipeline__stage");
      var $answer = $stage.find(".host-pipeline__answer").text("Kommo posts to the pipeline hook …");
      hostPost("/_host/dp/run", { lead_id: Number($stage.find(".host-pipeline__lead").val()), status_id: Number($stage.attr("data-status")) }).then(function (r) {
        $answer.text("hook answered " + r.status + ": " + JSON.stringify(r.body));
        $answer.attr("data-status", r.status);
        hostLog("pipeline post → " + r.status);
      });
    });
  }

  function openDpModal($, widget, statusId, values) {
    var dp = manifest.dp || { settings: {} };
    requirejs(["lib/components/base/modal"], function (Modal) {
      new Modal({
        class_name: "digital-pipeline__edit-modal",
        init: function ($body) {
          var modal = this;
          var $block = $('<div class="digital-pipeline__short-task"></div>').addClass("digital-pipeline__short-task_widget-style_" + code);
          var $wrap = $('<div id="widget_settings__fields_wrapper"></div>');
          Object.keys(dp.settings || {}).forEach(function (key) {
            var f = dp.settings[key];
            var $row = $('<div class="widget_settings_block__item_field"></div>');
            $row.append($('<div class="widget_settings_block__title_field"></div>').text(lookup(f.name) || key));
            $row.append($('<input type="text" class="text-input">').attr("name", key).val(values[key] || ""));
            $wrap.append($row);
          });
          var $save = $('<button type="button" class="button-input button-input_blue" id="host-dp-save"></button>').text(T("Done"));
          $block.append($wrap);
          $body.append($('<span class="modal-body__close" role="button" aria-label="close">×</span>'), $block, $('<div class="host-modal__controls"></div>').append($save));
          callback(widget, "dpSettings");
          $save.on("click", function () {
            var settings = {};
            $wrap.find("input[name], select[name], textarea[name]").each(function () {
              settings[this.name] = $(this).val();
            });
            hostPost("/_host/dp", { status_id: statusId, settings: settings }).then(function () {
              hostLog("pipeline action saved " + JSON.stringify(settings));
              modal.destroy();
              location.reload();
            });
          });
        },
      });
    });
  }

  function renderSalesbot($, widget) {
    var designer = manifest.salesbot_designer || {};
    var handlers = Object.keys(designer).filter(function (k) {
      return k !== "logo" && designer[k] && typeof designer[k] === "object";
    });
    var $work = $(work);
    lifecycle(widget);
    var saved = ctx.salesbot || {};
    var $designer = $('<div class="host-salesbot" id="host-salesbot"></div>').appendTo($work);
    $designer.append('<div class="host-salesbot__start">Start: a message arrives</div>');
    handlers.forEach(function (handler) {
      var h = designer[handler];
      var params = (saved.handler === handler && saved.params) || {};
      var $step = $('<div class="host-salesbot__step salesbot-widget-block"></div>').attr("data-handler", handler);
      $step.append($("<h3></h3>").text(lookup(h.name) || handler));
      var $body = $('<div class="salesbot-widget-block__body"></div>').appendTo($step);
      Object.keys(h.settings || {}).forEach(function (key) {
        var s = h.settings[key];
        var $row = $('<div class="salesbot-widget-block__param"></div>');
        $row.append($("<label></label>").text(lookup(s.name) || key));
        $row.append($('<input type="text" class="text-input">').attr("name", key).val(params[key] !== undefined ? params[key] : s.default_value || ""));
        $body.append($row);
      });
      var renderRow = function (caption) {
        return '<div class="salesbot-widget-block__row"><span class="salesbot-widget-block__caption">' + $("<i></i>").text(caption || "").html() + "</span></div>";
      };
      var result = callback(widget, "salesbotDesignerSettings", $body, renderRow, params);
      var exits = (result && result.exits) || [];
      var $exits = $('<div class="host-salesbot__exits"></div>').appendTo($step);
      exits.forEach(function (x) {
        $exits.append($('<span class="host-salesbot__exit"></span>').attr("data-exit", x.code).text(x.title || x.code));
      });
      $designer.append($step);
    });
    var $save = $('<button type="button" class="button-input button-input_blue" id="host-salesbot-save"></button>').text(T("Save the bot")).appendTo($work);
    var $out = $('<pre class="host-salesbot__saved" id="host-salesbot-saved"></pre>').appendTo($work);
    if (saved.steps) $out.text(JSON.stringify(saved.steps, null, 2));
    $save.on("click", function () {
      var $step = $designer.find(".host-salesbot__step").first();
      var handler = $step.attr("data-handler");
      var params = {};
      $step.find("input[name], select[name], textarea[name]").each(function () {
        params[this.name] = $(this).val();
      });
      var json = callback(widget, "onSalesbotDesignerSave", handler, params);
      var steps;
      try {
        steps = JSON.parse(json);
      } catch (e) {
        $out.text("onSalesbotDesignerSave must return a JSON string; it returned " + String(json));
        return;
      }
      hostPost("/_host/salesbot", { handler: handler, params: params, steps: steps }).then(function () {
        $out.text(JSON.stringify(steps, null, 2));
        hostLog("bot saved");
      });
    });
  }
})();

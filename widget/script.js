/*
 * Mailer: the Kommo widget (docs/widget.md; what it expects of its host: widget/HOST-CONTRACT.md).
 *
 * A plain RequireJS module, shipped as written: Kommo forbids minified or obfuscated code in
 * public integrations, and there is no build step but the zip. Every call to Mailer's backend
 * goes through self.$authorizedAjax (Kommo adds the one-time X-Auth-Token the backend
 * verifies); errors are shown from the API's JSON error bodies (field + message) in the
 * manager's language, and nothing typed is lost when a request fails: the compose window
 * keeps its text and saves a draft in the browser as the manager types.
 */
define(['jquery', 'lib/components/base/modal'], function ($, Modal) {
  'use strict';

  /** @type {Record<string, string>} card area -> the API's entity type */
  var CARD_ENTITY = { lcard: 'leads', ccard: 'contacts', comcard: 'companies' };
  var TRIGGER_EVENTS = ['sent', 'opened', 'not_opened', 'failed', 'replied'];
  var TRIGGER_TYPES = ['task', 'note', 'stage', 'field', 'email', 'lead', 'tags'];
  // Each trigger type's settings (POST /v1/triggers `params`), as form fields.
  var TRIGGER_PARAMS = {
    task: [['text', 'textarea'], ['task_type_id', 'number'], ['deadline_seconds', 'number'], ['responsible', 'text'], ['entity', 'entity']],
    note: [['text', 'textarea'], ['entity', 'entity']],
    stage: [['pipeline_id', 'number'], ['status_id', 'number']],
    field: [['entity', 'entity'], ['field_id', 'number'], ['value', 'text']],
    email: [['template_id', 'template']],
    lead: [['name', 'text'], ['pipeline_id', 'number'], ['status_id', 'number'], ['responsible', 'text']],
    tags: [['entity', 'entity'], ['add', 'text'], ['remove', 'text']]
  };
  // The variables endpoint (issue 14) may not exist yet: the picker falls back to these.
  var VARIABLES_PATHS = ['/v1/variables', '/v1/templates/variables'];
  var FALLBACK_VARIABLES = [
    '{{ lead.name }}', '{{ lead.price }}', '{{ lead.responsible.name }}', '{{ lead.responsible.email }}',
    '{{ contact.name }}', '{{ contact.first_name }}', '{{ contact.last_name }}', '{{ contact.email }}',
    '{{ contact.phone }}', '{{ company.name }}', '{{ user.name }}', '{{ user.email }}',
    '{{ lead.cf["Field name"] }}', '{{ contact.name | first_name }}', '{{ lead.price | money }}'
  ];
  var POLL_MS = 2000;
  var DRAFT_SAVE_MS = 400;

  return function MailerWidget() {
    var self = /** @type {KommoWidget} */ (/** @type {unknown} */ (this));
    /** @type {Array<() => void>} */
    var cleanups = [];
    var state = {
      /** @type {any} */ me: null,
      /** @type {any[] | null} */ mailboxes: null,
      /** @type {any[] | null} */ templates: null,
      /** @type {any[] | null} */ triggers: null
    };

    // ---------------------------------------------------------------- basics

    function code() {
      var settings = self.get_settings() || {};
      return settings.widget_code || (self.params && self.params.widget_code) || 'mailer';
    }

    function ns() {
      return '.' + code();
    }

    /** @returns {KommoSystem} */
    function sys() {
      return self.system() || { area: '' };
    }

    function area() {
      var system = sys();
      return system.area || '';
    }

    /** Text of an i18n key such as 'compose.send'; the key itself when missing. */
    function t(path, values) {
      var parts = path.split('.');
      var node = self.i18n(parts[0]);
      for (var i = 1; i < parts.length && node !== undefined && node !== null; i += 1) {
        node = node[parts[i]];
      }
      var text = typeof node === 'string' ? node : path;
      if (values) {
        Object.keys(values).forEach(function (name) {
          text = text.split('{' + name + '}').join(String(values[name]));
        });
      }
      return text;
    }

    function apiBase() {
      var settings = self.get_settings() || {};
      var url = (settings.api_url || '').trim();
      return url.replace(/\/+$/, '');
    }

    /** A jQuery element with text (never HTML) and attributes. */
    function el(tag, attrs, text) {
      var $node = $('<' + tag + '>');
      if (attrs) {
        Object.keys(attrs).forEach(function (name) {
          if (attrs[name] !== undefined && attrs[name] !== null && attrs[name] !== false) {
            $node.attr(name, attrs[name] === true ? name : attrs[name]);
          }
        });
      }
      if (text !== undefined && text !== null) {
        $node.text(String(text));
      }
      return $node;
    }

    function notify(text) {
      if (window.APP && APP.notifications && APP.notifications.show_message) {
        APP.notifications.show_message({ header: t('widget.name'), text: text });
      }
    }

    function formatDate(iso) {
      if (!iso) {
        return '';
      }
      var date = new Date(iso);
      return isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
    }

    function splitAddresses(text) {
      return String(text || '').split(/[\s,;]+/).map(function (s) { return s.trim(); }).filter(Boolean);
    }

    /** A twig template of the archive (templates/<name>.twig) rendered with the i18n texts. */
    function view(name, params) {
      return new Promise(function (resolve, reject) {
        try {
          self.render({
            href: '/templates/' + name + '.twig',
            base_path: self.params.path,
            v: self.get_version ? self.get_version() : '',
            load: function (template) {
              resolve(template.render($.extend({ i18n: self.langs, widget_code: code() }, params || {})));
            }
          }, {});
        } catch (error) {
          reject(error);
        }
      });
    }

    // ---------------------------------------------------------------- the backend

    /**
     * One call of Mailer's API through Kommo's $authorizedAjax.
     * Resolves with the JSON body (null for 204); rejects with an ApiError-like object
     * {status, error, message, field, reason, limit_bytes}.
     */
    function api(method, path, body) {
      var base = apiBase();
      if (!base) {
        return Promise.reject({ status: 0, error: 'not_configured', message: t('errors.not_configured') });
      }
      var options = {
        url: base + path,
        method: method,
        type: method,
        dataType: 'json',
        timeout: 60000
      };
      if (body !== undefined) {
        options.contentType = 'application/json';
        options.data = JSON.stringify(body);
      }
      return new Promise(function (resolve, reject) {
        self.$authorizedAjax(options).done(function (data) {
          resolve(data === undefined ? null : data);
        }).fail(function (xhr, textStatus) {
          if (xhr && xhr.status >= 200 && xhr.status < 300) {
            resolve(null); // 204 or an empty body that jQuery could not parse as JSON
            return;
          }
          reject(apiError(xhr, textStatus));
        });
      });
    }

    function apiError(xhr, textStatus) {
      var body = null;
      if (xhr && xhr.responseJSON && typeof xhr.responseJSON === 'object') {
        body = xhr.responseJSON;
      } else if (xhr && xhr.responseText) {
        try {
          body = JSON.parse(xhr.responseText);
        } catch (ignore) {
          body = null;
        }
      }
      var error = $.extend({ status: xhr ? xhr.status : 0, textStatus: textStatus }, body || {});
      if (!error.error) {
        error.error = error.status ? 'http_' + error.status : 'network';
      }
      return error;
    }

    /** The error in the manager's words: the field's label and the server's message. */
    function errorText(error) {
      if (!error) {
        return t('errors.unknown');
      }
      if (error.error === 'not_configured') {
        return error.message;
      }
      if (!error.status) {
        return t('errors.network');
      }
      if (error.status === 401) {
        return t('errors.unauthorized');
      }
      if (error.status === 403 && error.reason) {
        var reason = t('errors.reason.' + error.reason);
        if (reason !== 'errors.reason.' + error.reason) {
          return reason;
        }
      }
      if (error.status === 413 && error.limit_bytes) {
        return t('errors.too_large', { limit: Math.round(error.limit_bytes / 1048576) + ' MB' }) +
          (error.message ? ' (' + error.message + ')' : '');
      }
      if (error.status >= 500 && !error.message) {
        return t('errors.server');
      }
      var message = error.message || t('errors.unknown');
      if (error.field) {
        return fieldLabel(error.field) + ': ' + message;
      }
      return message;
    }

    function fieldLabel(name) {
      var key = 'fields.' + String(name).split('.')[0].replace(/\[.*$/, '');
      var label = t(key);
      return label === key ? name : label;
    }

    /** Show an error inside a form, and mark the field it names. */
    function showError($form, error) {
      var $box = $form.find('[data-testid="mailer-form-error"]').first();
      $form.find('.mailer-field_error').removeClass('mailer-field_error');
      if (error && error.field) {
        $form.find('[name="' + String(error.field).split('.')[0] + '"]').closest('.mailer-field').addClass('mailer-field_error');
      }
      $box.text(errorText(error)).show();
    }

    function clearError($form) {
      $form.find('[data-testid="mailer-form-error"]').first().text('').hide();
      $form.find('.mailer-field_error').removeClass('mailer-field_error');
    }

    function errorBox() {
      return el('div', { 'class': 'mailer-error', 'data-testid': 'mailer-form-error', role: 'alert' }).hide();
    }

    function loadMe() {
      if (state.me) {
        return Promise.resolve(state.me);
      }
      return api('GET', '/v1/me').then(function (me) {
        state.me = me;
        return me;
      });
    }

    function loadMailboxes(force) {
      if (state.mailboxes && !force) {
        return Promise.resolve(state.mailboxes);
      }
      return api('GET', '/v1/mailboxes').then(function (data) {
        state.mailboxes = (data && data.items) || [];
        return state.mailboxes;
      });
    }

    function loadTemplates(force) {
      if (state.templates && !force) {
        return Promise.resolve(state.templates);
      }
      return api('GET', '/v1/templates').then(function (data) {
        state.templates = (data && data.items) || [];
        return state.templates;
      });
    }

    function loadTriggers(force) {
      if (state.triggers && !force) {
        return Promise.resolve(state.triggers);
      }
      return api('GET', '/v1/triggers').then(function (data) {
        state.triggers = (data && data.items) || [];
        return state.triggers;
      });
    }

    /** GET /v1/variables's shape: `standard` and `custom_fields` by group, as one list. */
    function flattenVariables(data) {
      var list = [];
      Object.keys((data && data.standard) || {}).forEach(function (group) {
        (data.standard[group] || []).forEach(function (item) {
          list.push({ value: item.variable, label: item.label || item.variable, group: group });
        });
      });
      Object.keys((data && data.custom_fields) || {}).forEach(function (group) {
        (data.custom_fields[group] || []).forEach(function (item) {
          list.push({ value: item.by_name || item.by_id, label: item.name || item.by_name, group: group });
        });
      });
      return list;
    }

    /** Variables for the template editor: the API's list, else a built-in one (404 while it is built). */
    function loadVariables() {
      var tried = VARIABLES_PATHS.reduce(function (chain, path) {
        return chain.catch(function () {
          return api('GET', path).then(function (data) {
            var found = data && (data.items || data.variables || flattenVariables(data));
            if (!Array.isArray(found) || !found.length) {
              throw new Error('no variables at ' + path);
            }
            return found;
          });
        });
      }, Promise.reject(new Error('not tried yet')));
      return tried.then(function (items) {
        return items.map(function (item) {
          if (typeof item === 'string') {
            return { value: item, label: item };
          }
          var value = item.insert || item.value || item.variable || item.name;
          return { value: value, label: item.label || item.title || value, group: item.group || item.entity };
        }).filter(function (item) { return item.value; });
      }).catch(function () {
        return FALLBACK_VARIABLES.map(function (value) { return { value: value, label: value }; });
      });
    }

    function mailboxOptions($select, mailboxes, selected, withEmpty) {
      $select.empty();
      if (withEmpty) {
        $select.append(el('option', { value: '' }, t(withEmpty)));
      }
      mailboxes.forEach(function (mailbox) {
        var label = (mailbox.sender_name ? mailbox.sender_name + ' <' + mailbox.sender_email + '>' : mailbox.sender_email) +
          ' — ' + t('light.' + (mailbox.status || 'unchecked'));
        $select.append(el('option', {
          value: mailbox.id,
          selected: selected ? mailbox.id === selected : (!withEmpty && mailbox.is_default)
        }, label));
      });
    }

    function templateOptions($select, templates, selected, emptyKey) {
      $select.empty().append(el('option', { value: '' }, t(emptyKey || 'compose.no_template')));
      templates.forEach(function (template) {
        $select.append(el('option', { value: template.id, selected: template.id === selected }, template.name));
      });
    }

    // ---------------------------------------------------------------- drafts (on the server, and a copy in the browser)
    //
    // "Save draft" stores the window on the server (POST/PUT /v1/drafts, docs/letters.md); the
    // browser keeps its own copy as the manager types (per account, user and entity), with the
    // server draft's id, so nothing is lost when a request fails or the page is reloaded.

    function draftKey(entity) {
      var system = sys();
      var about = entity || { type: 'none', id: 0 };
      return ['mailer', 'draft', system.subdomain || '', system.amouser_id || '', about.type, about.id].join(':');
    }

    function readDraft(entity) {
      try {
        var raw = window.localStorage.getItem(draftKey(entity));
        return raw ? JSON.parse(raw) : null;
      } catch (ignore) {
        return null;
      }
    }

    function writeDraft(entity, draft) {
      try {
        draft.saved_at = new Date().toISOString();
        draft.entity = entity;
        window.localStorage.setItem(draftKey(entity), JSON.stringify(draft));
        return true;
      } catch (ignore) {
        return false;
      }
    }

    function dropDraft(entity) {
      try {
        window.localStorage.removeItem(draftKey(entity));
      } catch (ignore) {
        // storage unavailable: nothing was kept
      }
    }

    /** A server draft (GET /v1/drafts item) as the compose window's values. */
    function draftFromServer(saved) {
      var request = saved.request || {};
      var local = '';
      if (request.send_at) {
        var at = new Date(request.send_at);
        at.setMinutes(at.getMinutes() - at.getTimezoneOffset());
        local = at.toISOString().slice(0, 16);
      }
      return {
        server_id: saved.id,
        mailbox_id: request.mailbox_id,
        to: request.to || [],
        cc: request.cc || [],
        bcc: request.bcc || [],
        template_id: request.template_id,
        subject: request.subject || '',
        html: request.html || '',
        later: !!request.send_at,
        send_at_local: local,
        attachments: (saved.attachments || []).map(function (a) { return { upload_id: a.upload_id, filename: a.filename, size: a.size }; }),
        attachment_links: request.attachment_links || [],
        triggers: request.triggers || {},
        not_opened_hours: request.not_opened_after ? String(Math.round(request.not_opened_after / 36) / 100) : '',
        saved_at: saved.updated_at
      };
    }

    /** The browser's copies of drafts whose server copy is `id`, dropped (it was sent or deleted). */
    function dropLocalCopies(id) {
      localDrafts().forEach(function (draft) {
        if (draft.server_id === id) {
          try {
            window.localStorage.removeItem(draft.key);
          } catch (ignore) {
            // storage unavailable: nothing was kept
          }
        }
      });
    }

    function localDrafts() {
      var system = sys();
      var prefix = ['mailer', 'draft', system.subdomain || '', system.amouser_id || ''].join(':') + ':';
      var drafts = [];
      try {
        for (var i = 0; i < window.localStorage.length; i += 1) {
          var key = window.localStorage.key(i);
          if (key && key.indexOf(prefix) === 0) {
            var draft = JSON.parse(window.localStorage.getItem(key) || 'null');
            if (draft) {
              draft.key = key;
              drafts.push(draft);
            }
          }
        }
      } catch (ignore) {
        return drafts;
      }
      return drafts;
    }

    // ---------------------------------------------------------------- card: the panel and its emails

    function cardEntity() {
      var type = CARD_ENTITY[area()];
      var card = window.APP && APP.data && APP.data.current_card;
      var id = card && Number(card.id);
      return type && id ? { type: type, id: id } : null;
    }

    function renderCardPanel() {
      self.render_template({
        caption: { class_name: 'mailer-caption' },
        body: '<div class="mailer mailer-panel" id="mailer-panel" data-testid="mailer-panel"></div>',
        render: ''
      });
    }

    function fillCardPanel() {
      var $panel = $('#mailer-panel');
      var entity = cardEntity();
      if (!$panel.length) {
        return;
      }
      if (!entity) {
        $panel.text(t('panel.save_card_first'));
        return;
      }
      view('panel', {}).then(function (html) {
        $panel.html(html);
        loadEmails($panel, entity);
      }).catch(function (error) {
        $panel.empty().append(el('div', { 'class': 'mailer-error' }, errorText(error)));
      });
    }

    /** The entity's emails, newest first: GET /v1/messages?entity_type=&entity_id= (pages of 50, "Show more"). */
    function loadEmails($panel, entity) {
      var $list = $panel.find('[data-testid="mailer-emails"]');
      $list.empty().append(el('div', { 'class': 'mailer-muted' }, t('panel.loading')));
      var reload = function () { loadEmails($panel, entity); };
      function page(cursor) {
        var query = '?entity_type=' + encodeURIComponent(entity.type) + '&entity_id=' + encodeURIComponent(String(entity.id)) +
          '&limit=50' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : '');
        return api('GET', '/v1/messages' + query).then(function (data) {
          $list.find('[data-testid="mailer-emails-more"], .mailer-muted').filter(function () { return !$(this).closest('.mailer-email').length; }).remove();
          (data.items || []).forEach(function (message) {
            $list.append(emailRow(message, reload));
          });
          if (!$list.children().length) {
            $list.append(el('div', { 'class': 'mailer-muted', 'data-testid': 'mailer-emails-empty' }, t('panel.no_emails')));
          }
          if (data.next_cursor) {
            $list.append(el('button', { type: 'button', 'class': 'mailer-button', 'data-testid': 'mailer-emails-more' }, t('panel.more')).on('click', function () {
              $(this).prop('disabled', true);
              var $more = $(this);
              page(data.next_cursor).catch(function (error) {
                $more.prop('disabled', false).before(el('div', { 'class': 'mailer-error', 'data-testid': 'mailer-form-error' }, errorText(error)));
              });
            }));
          }
        });
      }
      return page(null).catch(function (error) {
        $list.empty().append(el('div', { 'class': 'mailer-error', 'data-testid': 'mailer-form-error' }, errorText(error)));
      });
    }

    function sumClicks(message) {
      return (message.clicks || []).reduce(function (total, click) { return total + (click.people || 0); }, 0);
    }

    /** One email: subject, status, opens, clicks, and the server's words when it failed. */
    function emailRow(message, reload) {
      var $row = el('div', { 'class': 'mailer-email', 'data-testid': 'mailer-email-row', 'data-id': message.id, 'data-status': message.status });
      // as sent (a template's variables filled in), else as composed (not sent yet)
      $row.append(el('div', { 'class': 'mailer-email__subject', 'data-testid': 'mailer-email-subject' }, message.sent_subject || message.subject || t('panel.no_subject')));
      $row.append(el('div', { 'class': 'mailer-muted' }, (message.to || []).join(', ')));
      var $meta = el('div', { 'class': 'mailer-email__meta' });
      $meta.append(el('span', { 'class': 'mailer-status mailer-status_' + message.status, 'data-testid': 'mailer-email-status' }, t('status.' + message.status)));
      $meta.append(el('span', { 'data-testid': 'mailer-email-opens' }, t('panel.opens', { n: (message.opens && message.opens.people) || 0 })));
      $meta.append(el('span', { 'data-testid': 'mailer-email-clicks' }, t('panel.clicks', { n: sumClicks(message) })));
      $meta.append(el('span', { 'class': 'mailer-muted' }, formatDate(message.sent_at || message.send_at || message.created_at)));
      $row.append($meta);
      var words = message.last_error || failureWords(message);
      if (message.status === 'failed' || (words && message.status !== 'sent')) {
        $row.append(el('div', { 'class': 'mailer-error', 'data-testid': 'mailer-email-error' }, words || t('status.failed')));
      }
      if (message.waiting && message.waiting.detail) {
        $row.append(el('div', { 'class': 'mailer-muted', 'data-testid': 'mailer-email-waiting' }, message.waiting.detail));
      }
      var $actions = el('div', { 'class': 'mailer-actions' });
      var $timeline = el('div', { 'class': 'mailer-timeline', 'data-testid': 'mailer-email-timeline' }).hide();
      $actions.append(el('a', { href: '#', 'class': 'mailer-link', 'data-testid': 'mailer-email-details' }, t('panel.details')).on('click', function (event) {
        event.preventDefault();
        if ($timeline.is(':visible')) {
          $timeline.hide();
          return;
        }
        api('GET', '/v1/messages/' + encodeURIComponent(message.id)).then(function (full) {
          $timeline.empty().show();
          (full.timeline || full.history || []).forEach(function (entry) {
            var line = formatDate(entry.at) + ' — ' + (entry.event || '') + (entry.detail ? ': ' + entry.detail : '');
            $timeline.append(el('div', { 'class': entry.failure ? 'mailer-timeline__entry mailer-timeline__entry_failure' : 'mailer-timeline__entry' }, line));
          });
        }).catch(function (error) { showError($row, error); });
      }));
      if (message.status === 'draft') { // a draft saved on this card: open it in compose again
        $actions.append(el('button', { type: 'button', 'class': 'mailer-button', 'data-testid': 'mailer-email-open-draft' }, t('letters.open')).on('click', function () {
          clearError($row);
          api('GET', '/v1/drafts/' + encodeURIComponent(message.id)).then(function (full) {
            openCompose(full.entity || null, null, full, reload);
          }).catch(function (error) { showError($row, error); });
        }));
      }
      if (message.status === 'failed') {
        $actions.append(el('button', { type: 'button', 'class': 'mailer-button', 'data-testid': 'mailer-email-retry' }, t('panel.retry')).on('click', function () {
          actOnMessage($row, 'retry', message.id, reload);
        }));
      }
      if (message.status === 'queued' || message.status === 'scheduled') {
        $actions.append(el('button', { type: 'button', 'class': 'mailer-button', 'data-testid': 'mailer-email-cancel' }, t('panel.cancel')).on('click', function () {
          actOnMessage($row, 'cancel', message.id, reload);
        }));
      }
      $row.append($actions).append($timeline).append(errorBox());
      return $row;
    }

    function failureWords(message) {
      var failures = (message.timeline || []).filter(function (entry) { return entry.failure && entry.detail; });
      return failures.length ? failures[failures.length - 1].detail : '';
    }

    function actOnMessage($row, action, id, reload) {
      clearError($row);
      $row.find('button').prop('disabled', true);
      api('POST', '/v1/messages/' + encodeURIComponent(id) + '/' + action, {}).then(function () {
        notify(t(action === 'retry' ? 'panel.retried' : 'panel.canceled'));
        reload();
      }).catch(function (error) {
        $row.find('button').prop('disabled', false);
        showError($row, error);
      });
    }

    // ---------------------------------------------------------------- card: compose

    function cardContacts() {
      if (typeof self.get_current_card_contacts_data !== 'function') {
        return Promise.resolve([]);
      }
      return Promise.resolve(self.get_current_card_contacts_data()).then(function (contacts) {
        return contacts || [];
      }).catch(function () {
        return [];
      });
    }

    function emailsOf(contact) {
      return (contact.emails || []).map(function (item) {
        return typeof item === 'string' ? item : (item && (item.value || item.email)) || '';
      }).filter(Boolean);
    }

    /**
     * The compose window in a Kommo modal; `preset` may name an address (the e-mail menu),
     * `serverDraft` a draft of GET /v1/drafts to open again (the letters tab); `onSent` runs
     * once the email is accepted.
     */
    function openCompose(entity, preset, serverDraft, onSent) {
      Promise.all([view('compose', {}), cardContacts()]).then(function (results) {
        var modal = new Modal({
          class_name: 'mailer-modal',
          init: function ($modal) {
            $modal.trigger('modal:loaded').html(results[0]).trigger('modal:centrify');
            setUpCompose($modal.find('[data-testid="mailer-compose"]'), entity, results[1], preset, function () {
              modal.destroy();
            }, serverDraft, onSent);
          },
          destroy: function () {}
        });
      }).catch(function (error) {
        notify(errorText(error));
      });
    }

    function setUpCompose($form, entity, contacts, preset, close, serverDraft, onSent) {
      var attachments = []; // {upload_id, filename, size}
      var links = [];
      var serverId = null; // the server draft this window saves to and sends (POST /v1/drafts/{id}/send)
      var $to = $form.find('[data-testid="mailer-compose-to"]');
      var seen = {};
      contacts.forEach(function (contact) {
        emailsOf(contact).forEach(function (address) {
          if (seen[address.toLowerCase()]) {
            return;
          }
          seen[address.toLowerCase()] = true;
          var $label = el('label', { 'class': 'mailer-check' });
          $label.append(el('input', { type: 'checkbox', value: address, 'data-testid': 'mailer-compose-to-contact', checked: true }));
          $label.append(el('span', {}, (contact.name ? contact.name + ' ' : '') + '<' + address + '>'));
          $to.append($label);
        });
      });
      if (!contacts.length) {
        $to.append(el('div', { 'class': 'mailer-muted' }, t('compose.no_contacts')));
      }
      if (preset) {
        $form.find('[name="to_extra"]').val(preset);
        $to.find('input[type=checkbox]').prop('checked', false);
        $to.find('input[value="' + preset + '"]').prop('checked', true);
      }

      var $from = $form.find('[name="mailbox_id"]');
      var $template = $form.find('[name="template_id"]');
      loadMailboxes().then(function (mailboxes) {
        mailboxOptions($from, mailboxes, null, null);
        if (!mailboxes.length) {
          $form.find('[data-testid="mailer-compose-notice"]').text(t('compose.no_mailbox')).show();
        }
      }).catch(function (error) { showError($form, error); }).then(restore); // the draft comes back even offline
      loadTemplates().then(function (templates) {
        templateOptions($template, templates, $template.data('restore'));
      }).catch(function (error) { showError($form, error); });
      var $events = $form.find('[data-testid="mailer-compose-trigger-events"]');
      loadTriggers().then(function (triggers) {
        var chosen = ((serverDraft ? draftFromServer(serverDraft) : readDraft(entity)) || {}).triggers || {};
        TRIGGER_EVENTS.forEach(function (eventName) {
          $events.append(triggerChecks('compose', eventName, triggers, chosen[eventName] || []));
        });
      }).catch(function (error) { showError($form, error); });

      function collect() {
        var to = $to.find('input:checked').map(function () { return String($(this).val()); }).get();
        to = to.concat(splitAddresses($form.find('[name="to_extra"]').val()));
        return {
          mailbox_id: $from.val() || undefined,
          to: to,
          to_extra: $form.find('[name="to_extra"]').val(),
          cc: splitAddresses($form.find('[name="cc"]').val()),
          bcc: splitAddresses($form.find('[name="bcc"]').val()),
          template_id: $template.val() || undefined,
          subject: String($form.find('[name="subject"]').val() || ''),
          html: String($form.find('[name="html"]').val() || ''),
          later: $form.find('[name="later"]').is(':checked'),
          send_at_local: $form.find('[name="send_at"]').val(),
          attachments: attachments.slice(),
          attachment_links: links.slice(),
          triggers: checkedTriggers($form),
          not_opened_hours: $form.find('[name="not_opened_hours"]').val(),
          server_id: serverId
        };
      }

      function restore() {
        var draft = serverDraft ? draftFromServer(serverDraft) : readDraft(entity);
        if (!draft || (!serverDraft && ($form.find('[name="subject"]').val() || $form.find('[name="html"]').val()))) {
          return; // no draft, or the manager has started typing meanwhile
        }
        serverId = draft.server_id || null;
        $form.find('[name="subject"]').val(draft.subject || '');
        $form.find('[name="html"]').val(draft.html || '');
        var wanted = (draft.to || []).map(function (a) { return String(a).toLowerCase(); });
        var ticked = {};
        if (wanted.length) {
          $to.find('input[type=checkbox]').each(function () {
            var address = String($(this).val()).toLowerCase();
            ticked[address] = true;
            $(this).prop('checked', wanted.indexOf(address) >= 0);
          });
        }
        var extra = draft.to_extra;
        if (extra === undefined || extra === null) { // a server draft: the addresses that are not the card's
          extra = (draft.to || []).filter(function (a) { return !ticked[String(a).toLowerCase()]; }).join(', ');
        }
        $form.find('[name="to_extra"]').val(extra || '');
        $form.find('[name="cc"]').val((draft.cc || []).join(', '));
        $form.find('[name="bcc"]').val((draft.bcc || []).join(', '));
        if ((draft.cc || []).length || (draft.bcc || []).length) {
          $form.find('.mailer-copies').show();
        }
        if (draft.mailbox_id) {
          $from.val(draft.mailbox_id);
        }
        if (draft.template_id) {
          $template.data('restore', draft.template_id).val(draft.template_id);
        }
        if (draft.later) {
          $form.find('[name="later"]').prop('checked', true);
          $form.find('[name="send_at"]').val(draft.send_at_local || '').show();
        }
        $form.find('[name="not_opened_hours"]').val(draft.not_opened_hours || '');
        attachments = draft.attachments || [];
        links = draft.attachment_links || [];
        drawAttachments();
        $form.find('[data-testid="mailer-compose-notice"]').text(t('compose.draft_restored', { at: formatDate(draft.saved_at) })).show();
      }

      /** The window's values as the compose body of POST /v1/messages and /v1/drafts. */
      function composeBody(draft) {
        var request = { subject: draft.subject, html: draft.html };
        if (entity) { request.entity = entity; }
        if (draft.mailbox_id) { request.mailbox_id = draft.mailbox_id; }
        if (draft.to.length) { request.to = draft.to; }
        if (draft.cc.length) { request.cc = draft.cc; }
        if (draft.bcc.length) { request.bcc = draft.bcc; }
        if (draft.template_id) { request.template_id = draft.template_id; }
        if (draft.attachments.length) {
          request.attachments = draft.attachments.map(function (a) { return { upload_id: a.upload_id }; });
        }
        if (draft.attachment_links.length) { request.attachment_links = draft.attachment_links; }
        if (Object.keys(draft.triggers).length) { request.triggers = draft.triggers; }
        if (Number(draft.not_opened_hours) > 0) {
          request.not_opened_after = Math.max(60, Math.round(Number(draft.not_opened_hours) * 3600));
        }
        if (draft.later && draft.send_at_local) {
          request.send_at = new Date(draft.send_at_local).toISOString();
        }
        return request;
      }

      /** A draft the server no longer has as a draft (sent, deleted): 404 or 409. */
      function goneDraft(error) {
        return !!error && (error.status === 404 || error.status === 409);
      }

      /** Save the window as a server draft: PUT over its own, else (none, or gone) a new one. */
      function saveToServer(draft) {
        var body = composeBody(draft);
        var saving = serverId ?
          api('PUT', '/v1/drafts/' + encodeURIComponent(serverId), body).catch(function (error) {
            if (!goneDraft(error)) { throw error; }
            return api('POST', '/v1/drafts', body);
          }) :
          api('POST', '/v1/drafts', body);
        return saving.then(function (saved) {
          serverId = saved && saved.id ? saved.id : serverId;
          draft.server_id = serverId;
          writeDraft(entity, draft);
          return saved;
        });
      }

      /** Send: the server draft updated and sent under its id, else POST /v1/messages. */
      function sendNow(request) {
        if (!serverId) {
          return api('POST', '/v1/messages', request);
        }
        var id = serverId;
        return api('PUT', '/v1/drafts/' + encodeURIComponent(id), request).then(function () {
          return api('POST', '/v1/drafts/' + encodeURIComponent(id) + '/send', {});
        }, function (error) {
          if (!goneDraft(error)) { throw error; }
          serverId = null;
          return api('POST', '/v1/messages', request);
        });
      }

      var saveTimer = 0;
      function autosave() {
        window.clearTimeout(saveTimer);
        saveTimer = window.setTimeout(function () { writeDraft(entity, collect()); }, DRAFT_SAVE_MS);
      }
      $form.on('input change', 'input, textarea, select', autosave);

      function drawAttachments() {
        var $box = $form.find('[data-testid="mailer-compose-attachments"]').empty();
        attachments.forEach(function (file, index) {
          var $item = el('div', { 'class': 'mailer-attachment', 'data-testid': 'mailer-compose-attachment' }, file.filename + ' (' + Math.ceil((file.size || 0) / 1024) + ' KB) ');
          $item.append(el('a', { href: '#', 'class': 'mailer-link' }, '×').on('click', function (event) {
            event.preventDefault();
            attachments.splice(index, 1);
            drawAttachments();
            autosave();
          }));
          $box.append($item);
        });
        links.forEach(function (link, index) {
          var $item = el('div', { 'class': 'mailer-attachment', 'data-testid': 'mailer-compose-attachment-link' }, link + ' ');
          $item.append(el('a', { href: '#', 'class': 'mailer-link' }, '×').on('click', function (event) {
            event.preventDefault();
            links.splice(index, 1);
            drawAttachments();
            autosave();
          }));
          $box.append($item);
        });
      }

      $form.find('[data-testid="mailer-compose-show-triggers"]').on('click', function (event) {
        event.preventDefault();
        $form.find('[data-testid="mailer-compose-triggers"]').toggle();
      });
      $form.find('[data-testid="mailer-compose-show-cc"]').on('click', function (event) {
        event.preventDefault();
        $form.find('.mailer-copies').toggle();
      });
      $form.find('[name="later"]').on('change', function () {
        $form.find('[name="send_at"]').toggle($(this).is(':checked'));
      });
      $template.on('change', function () {
        var id = $template.val();
        if (!id) {
          return;
        }
        api('GET', '/v1/templates/' + encodeURIComponent(String(id))).then(function (template) {
          $form.find('[name="subject"]').val(template.subject || '');
          $form.find('[name="html"]').val(template.html || '');
          TRIGGER_EVENTS.forEach(function (eventName) {
            var ids = (template.triggers && template.triggers[eventName]) || [];
            $form.find('[name="trigger_' + eventName + '"]').each(function () {
              $(this).prop('checked', ids.indexOf(String($(this).val())) >= 0);
            });
          });
          if (template.not_opened_after) {
            $form.find('[name="not_opened_hours"]').val(String(Math.round(template.not_opened_after / 36) / 100));
          }
          autosave();
        }).catch(function (error) { showError($form, error); });
      });
      $form.find('[data-testid="mailer-compose-file"]').on('change', function () {
        var files = Array.prototype.slice.call(this.files || []);
        var $input = $(this);
        clearError($form);
        files.reduce(function (chain, file) {
          return chain.then(function () {
            return uploadFile(file, 'attachment').then(function (upload) {
              attachments.push({ upload_id: upload.id, filename: upload.filename, size: upload.size });
              drawAttachments();
              autosave();
            });
          });
        }, Promise.resolve()).catch(function (error) {
          showError($form, error);
        }).then(function () { $input.val(''); });
      });
      $form.find('[data-testid="mailer-compose-link-add"]').on('click', function (event) {
        event.preventDefault();
        var $input = $form.find('[name="attachment_link"]');
        var value = String($input.val() || '').trim();
        if (value) {
          links.push(value);
          $input.val('');
          drawAttachments();
          autosave();
        }
      });
      $form.find('[data-testid="mailer-compose-preview"]').on('click', function (event) {
        event.preventDefault();
        var draft = collect();
        clearError($form);
        previewInto($form, {
          template_id: draft.template_id,
          subject: draft.subject,
          html: draft.html,
          entity: entity,
          mailbox_id: draft.mailbox_id
        });
      });
      $form.find('[data-testid="mailer-compose-draft"]').on('click', function (event) {
        event.preventDefault();
        var draft = collect();
        var $button = $(this).prop('disabled', true);
        var $notice = $form.find('[data-testid="mailer-compose-notice"]');
        writeDraft(entity, draft); // the browser's copy first: nothing is lost if the request fails
        clearError($form);
        saveToServer(draft).then(function () {
          $notice.text(t('compose.draft_saved')).attr('data-saved', 'server').show();
        }).catch(function (error) {
          showError($form, error);
          $notice.text(t('compose.draft_kept')).attr('data-saved', 'browser').show();
        }).then(function () { $button.prop('disabled', false); });
      });
      $form.find('[data-testid="mailer-compose-close"]').on('click', function (event) {
        event.preventDefault();
        writeDraft(entity, collect());
        close();
      });
      $form.find('[data-testid="mailer-compose-send"]').on('click', function (event) {
        event.preventDefault();
        var draft = collect();
        writeDraft(entity, draft);
        var request = composeBody(draft);
        if (!draft.to.length && $to.find('input[type=checkbox]').length) {
          showError($form, { status: 422, field: 'to', message: t('compose.no_recipient') });
          return;
        }
        if (draft.later) {
          if (!draft.send_at_local) {
            showError($form, { status: 422, field: 'send_at', message: t('compose.pick_time') });
            return;
          }
        }
        var $button = $(this).prop('disabled', true);
        clearError($form);
        sendNow(request).then(function (message) {
          dropDraft(entity);
          notify(t(message && message.status === 'scheduled' ? 'compose.scheduled' : 'compose.sent'));
          close();
          var $panel = $('#mailer-panel');
          if ($panel.length && entity) {
            loadEmails($panel, entity);
          }
          if (onSent) {
            onSent();
          }
        }).catch(function (error) {
          $button.prop('disabled', false);
          showError($form, error); // the text stays in the form, and in the draft
        });
      });
    }

    /** One event's trigger checkboxes (name trigger_<event>), the chosen ids ticked. */
    function triggerChecks(prefix, eventName, triggers, chosen) {
      var $event = el('div', { 'class': 'mailer-field', 'data-testid': 'mailer-' + prefix + '-triggers-' + eventName.replace(/_/g, '-') });
      $event.append(el('label', { 'class': 'mailer-field__label' }, t('events.' + eventName)));
      triggers.forEach(function (trigger) {
        $event.append(el('label', { 'class': 'mailer-check' })
          .append(el('input', { type: 'checkbox', name: 'trigger_' + eventName, value: trigger.id, checked: chosen.indexOf(trigger.id) >= 0 }))
          .append(el('span', {}, trigger.name)));
      });
      if (!triggers.length) {
        $event.append(el('span', { 'class': 'mailer-muted' }, t('triggers.none')));
      }
      return $event;
    }

    /** The ticked trigger ids of a form, by event; events with none are left out. */
    function checkedTriggers($form) {
      var chosen = {};
      TRIGGER_EVENTS.forEach(function (eventName) {
        var ids = $form.find('[name="trigger_' + eventName + '"]:checked').map(function () { return String($(this).val()); }).get();
        if (ids.length) {
          chosen[eventName] = ids;
        }
      });
      return chosen;
    }

    /** Ask for an upload, then POST the file to storage with the presigned fields. */
    function uploadFile(file, purpose) {
      return api('POST', '/v1/uploads', {
        filename: file.name,
        size: file.size,
        content_type: file.type || undefined,
        purpose: purpose
      }).then(function (upload) {
        var data = new FormData();
        Object.keys(upload.upload.fields || {}).forEach(function (name) {
          data.append(name, upload.upload.fields[name]);
        });
        data.append('file', file);
        return new Promise(function (resolve, reject) {
          $.ajax({ url: upload.upload.url, method: 'POST', type: 'POST', data: data, processData: false, contentType: false })
            .done(function () { resolve(upload); })
            .fail(function (xhr) {
              reject({ status: xhr.status || 0, error: 'upload_failed', field: 'attachments', message: t('compose.upload_failed', { name: file.name }) });
            });
        });
      });
    }

    /** POST /v1/messages/preview and show the result as the client would see it. */
    function previewInto($form, request) {
      var $preview = $form.find('[data-testid="mailer-preview"]');
      var body = {};
      Object.keys(request).forEach(function (name) {
        if (request[name] !== undefined && request[name] !== '') {
          body[name] = request[name];
        }
      });
      if (body.template_id && !body.html) {
        delete body.html;
      }
      return api('POST', '/v1/messages/preview', body).then(function (result) {
        $preview.show();
        $preview.find('[data-testid="mailer-preview-subject"]').text(result.subject || '');
        var frame = $preview.find('[data-testid="mailer-preview-frame"]').get(0);
        if (frame) {
          frame.setAttribute('sandbox', '');
          frame.setAttribute('srcdoc', result.html || '');
        }
        var $missing = $preview.find('[data-testid="mailer-preview-missing"]').empty();
        if (result.missing && result.missing.length) {
          $missing.text(t('compose.missing', { names: result.missing.join(', ') })).show();
        } else {
          $missing.hide();
        }
      }).catch(function (error) {
        showError($form, error);
      });
    }

    // ---------------------------------------------------------------- lists: send to a selection

    function selection() {
      var selected = (typeof self.list_selected === 'function' && self.list_selected()) || {};
      return selected.selected || [];
    }

    /** The API's entity type of a selected row (Kommo's `type` is lead/contact/company). */
    function rowType(row, fallback) {
      var type = String(row.type || '').toLowerCase();
      if (type.indexOf('lead') === 0) { return 'leads'; }
      if (type.indexOf('compan') === 0) { return 'companies'; }
      if (type.indexOf('contact') === 0) { return 'contacts'; }
      return fallback;
    }

    function openBulk(fallbackType) {
      var rows = selection();
      self.render_template({
        caption: { class_name: 'mailer-caption' },
        body: '<div class="mailer mailer-bulk" id="mailer-bulk" data-testid="mailer-bulk"></div>',
        render: ''
      });
      if (typeof self.widgetsOverlay === 'function') {
        self.widgetsOverlay(true);
      }
      var groups = {};
      rows.forEach(function (row) {
        var type = rowType(row, fallbackType);
        groups[type] = groups[type] || [];
        groups[type].push(Number(row.id));
      });
      view('bulk', {}).then(function (html) {
        var $bulk = $('#mailer-bulk').html(html);
        setUpBulk($bulk.find('[data-testid="mailer-bulk-form"]'), groups, rows.length);
      }).catch(function (error) {
        $('#mailer-bulk').empty().append(el('div', { 'class': 'mailer-error' }, errorText(error)));
      });
    }

    function setUpBulk($form, groups, count) {
      $form.find('[data-testid="mailer-bulk-count"]').text(t('bulk.count', { n: count }));
      var $template = $form.find('[name="template_id"]');
      var $from = $form.find('[name="mailbox_id"]');
      loadTemplates().then(function (templates) { templateOptions($template, templates, null, 'bulk.pick_template'); })
        .catch(function (error) { showError($form, error); });
      loadMailboxes().then(function (mailboxes) { mailboxOptions($from, mailboxes, null, null); })
        .catch(function (error) { showError($form, error); });
      $form.find('[name="later"]').on('change', function () {
        $form.find('[name="send_at"]').toggle($(this).is(':checked'));
      });
      $form.find('[data-testid="mailer-bulk-send"]').on('click', function (event) {
        event.preventDefault();
        clearError($form);
        var templateId = $template.val();
        if (!templateId) {
          showError($form, { status: 422, field: 'template_id', message: t('bulk.pick_template') });
          return;
        }
        var sendAt = null;
        if ($form.find('[name="later"]').is(':checked')) {
          var local = $form.find('[name="send_at"]').val();
          if (!local) {
            showError($form, { status: 422, field: 'send_at', message: t('compose.pick_time') });
            return;
          }
          sendAt = new Date(String(local)).toISOString();
        }
        var name = String($form.find('[name="name"]').val() || '').trim() ||
          ($template.find('option:selected').text() + ' — ' + new Date().toLocaleString());
        var $button = $(this).prop('disabled', true);
        var types = Object.keys(groups);
        Promise.all(types.map(function (type) {
          return startCampaign({
            name: types.length > 1 ? name + ' (' + t('entities.' + type) + ')' : name,
            template_id: templateId,
            mailbox_ids: [$from.val()],
            audience: { entity_type: type, ids: groups[type] }
          }, sendAt);
        })).then(function (campaigns) {
          watchCampaigns($form, campaigns);
        }).catch(function (error) {
          if (routeMissing(error)) {
            return composeEach($form, groups, templateId, $from.val(), sendAt);
          }
          $button.prop('disabled', false);
          showError($form, error);
          return null;
        });
      });
    }

    /** A 404 for a route this backend does not have (older deployments: no campaigns API). */
    function routeMissing(error) {
      return !!error && error.status === 404 && (error.field === 'path' || !error.field);
    }

    function startCampaign(body, sendAt) {
      return api('POST', '/v1/campaigns', body).then(function (campaign) {
        var id = campaign.campaign_id || campaign.id;
        return api('POST', '/v1/campaigns/' + encodeURIComponent(id) + '/start', sendAt ? { send_at: sendAt } : {});
      });
    }

    /** Progress of the campaigns until each is sent (or stops), every POLL_MS. */
    function watchCampaigns($form, campaigns) {
      var $progress = $form.find('[data-testid="mailer-bulk-progress"]').show();
      var ids = campaigns.map(function (c) { return c.campaign_id || c.id; });
      var done = false;
      function draw(list) {
        var total = 0;
        var sent = 0;
        var failed = 0;
        var statuses = [];
        list.forEach(function (campaign) {
          var progress = campaign.progress || {};
          total += progress.recipients || 0;
          sent += progress.sent || 0;
          failed += progress.failed || 0;
          statuses.push(t('campaign_status.' + campaign.status) + (campaign.status_reason ? ': ' + campaign.status_reason : ''));
        });
        var percent = total ? Math.round(100 * (sent + failed) / total) : 0;
        $progress.find('[data-testid="mailer-bulk-progress-bar"]').css('width', percent + '%').attr('data-percent', percent);
        $progress.find('[data-testid="mailer-bulk-status"]').text(
          t('bulk.progress', { sent: sent, total: total, failed: failed, percent: percent }) + ' — ' + statuses.join('; ')
        );
        done = list.every(function (c) { return ['sent', 'canceled', 'interrupted', 'paused'].indexOf(c.status) >= 0 || c.status === 'scheduled'; });
        $progress.attr('data-done', done ? 'true' : 'false');
      }
      draw(campaigns);
      function tick() {
        if (done || !$form.closest('body').length) {
          return;
        }
        Promise.all(ids.map(function (id) { return api('GET', '/v1/campaigns/' + encodeURIComponent(id)); }))
          .then(function (list) { draw(list); })
          .catch(function (error) { showError($form, error); })
          .then(function () { if (!done) { schedule(tick); } });
      }
      schedule(tick);
    }

    function schedule(fn) {
      var timer = window.setTimeout(fn, POLL_MS);
      cleanups.push(function () { window.clearTimeout(timer); });
    }

    /** Without the campaigns API: one compose per entity on the bulk lane, counted here. */
    function composeEach($form, groups, templateId, mailboxId, sendAt) {
      var $progress = $form.find('[data-testid="mailer-bulk-progress"]').show();
      var jobs = [];
      Object.keys(groups).forEach(function (type) {
        groups[type].forEach(function (id) { jobs.push({ type: type, id: id }); });
      });
      var sent = 0;
      var failed = 0;
      function draw() {
        var percent = jobs.length ? Math.round(100 * (sent + failed) / jobs.length) : 100;
        $progress.find('[data-testid="mailer-bulk-progress-bar"]').css('width', percent + '%').attr('data-percent', percent);
        $progress.find('[data-testid="mailer-bulk-status"]').text(t('bulk.progress', { sent: sent, total: jobs.length, failed: failed, percent: percent }));
        $progress.attr('data-done', sent + failed === jobs.length ? 'true' : 'false');
      }
      draw();
      return jobs.reduce(function (chain, job) {
        return chain.then(function () {
          var body = { entity: job, template_id: templateId, lane: 'bulk' };
          if (mailboxId) { body.mailbox_id = mailboxId; }
          if (sendAt) { body.send_at = sendAt; }
          return api('POST', '/v1/messages', body).then(function () { sent += 1; }, function (error) {
            failed += 1;
            showError($form, error);
          }).then(draw);
        });
      }, Promise.resolve());
    }

    // ---------------------------------------------------------------- forms built from field lists

    /**
     * A form field: [name, kind, options]. Kinds: text, email, number, password, textarea,
     * checkbox, select (options: [[value, label]]), entity, template, time.
     */
    function field(prefix, spec, value) {
      var name = spec[0];
      var kind = spec[1] || 'text';
      var testid = 'mailer-' + prefix + '-' + name.replace(/_/g, '-');
      var $wrap = el('div', { 'class': 'mailer-field mailer-field_' + kind });
      var $label = el('label', { 'class': 'mailer-field__label' }, t('fields.' + name));
      var $input;
      if (kind === 'textarea') {
        $input = el('textarea', { name: name, rows: 6, 'data-testid': testid });
        $input.val(value === undefined || value === null ? '' : String(value));
      } else if (kind === 'checkbox') {
        $input = el('input', { type: 'checkbox', name: name, 'data-testid': testid, checked: !!value });
        $label = el('label', { 'class': 'mailer-check' }).append($input).append(el('span', {}, t('fields.' + name)));
        return $wrap.append($label);
      } else if (kind === 'select' || kind === 'entity' || kind === 'template') {
        $input = el('select', { name: name, 'data-testid': testid });
        var options = spec[2] || [];
        if (kind === 'entity') {
          options = [['lead', t('entities.lead')], ['contact', t('entities.contact')], ['company', t('entities.company')]];
        }
        if (kind === 'template') {
          options = [['', t('compose.no_template')]].concat((state.templates || []).map(function (tpl) { return [tpl.id, tpl.name]; }));
        }
        options.forEach(function (option) {
          $input.append(el('option', { value: option[0], selected: String(option[0]) === String(value === undefined ? '' : value) }, option[1]));
        });
      } else {
        $input = el('input', {
          type: kind === 'number' ? 'number' : (kind === 'password' ? 'password' : (kind === 'email' ? 'email' : 'text')),
          name: name,
          'data-testid': testid,
          autocomplete: kind === 'password' ? 'new-password' : 'off'
        });
        $input.val(value === undefined || value === null ? '' : String(value));
      }
      return $wrap.append($label).append($input);
    }

    function readField($form, name, kind) {
      var $input = $form.find('[name="' + name + '"]').first();
      if (kind === 'checkbox') {
        return $input.is(':checked');
      }
      var value = String($input.val() === undefined || $input.val() === null ? '' : $input.val()).trim();
      if (kind === 'number') {
        return value === '' ? null : Number(value);
      }
      return value;
    }

    function button(testid, key, primary) {
      return el('button', { type: 'button', 'class': 'mailer-button' + (primary ? ' mailer-button_primary' : ''), 'data-testid': testid }, t(key));
    }

    // ---------------------------------------------------------------- settings page (advanced_settings)

    var TABS = ['mailboxes', 'templates', 'triggers', 'links', 'letters', 'account'];

    function workArea() {
      var $area = $('#work-area-' + code());
      return $area.length ? $area : $('[data-mailer-work-area]').first();
    }

    function renderSettingsPage() {
      var $area = workArea();
      view('settings', { tabs: TABS.map(function (tab) { return { id: tab, label: t('tabs.' + tab) }; }) }).then(function (html) {
        $area.html(html);
        var $page = $area.find('[data-testid="mailer-settings"]');
        $page.on('click' + ns(), '[data-tab]', function (event) {
          event.preventDefault();
          showTab($page, $(this).attr('data-tab'));
        });
        showTab($page, 'mailboxes');
      }).catch(function (error) {
        $area.empty().append(el('div', { 'class': 'mailer-error' }, errorText(error)));
      });
    }

    function showTab($page, tab) {
      $page.find('[data-tab]').removeClass('mailer-tab_active');
      $page.find('[data-tab="' + tab + '"]').addClass('mailer-tab_active');
      var $content = $page.find('[data-testid="mailer-tab-content"]').empty().attr('data-tab-shown', tab);
      var draw = {
        mailboxes: drawMailboxes,
        templates: drawTemplates,
        triggers: drawTriggers,
        links: drawLinks,
        letters: drawLetters,
        account: drawAccount
      }[tab];
      if (draw) {
        draw($content);
      }
    }

    function listShell($content, prefix, addKey) {
      var $box = el('div', { 'class': 'mailer-section', 'data-testid': 'mailer-' + prefix + '-section' });
      $box.append(button('mailer-' + prefix + '-add', addKey, true));
      $box.append(errorBox());
      $box.append(el('div', { 'class': 'mailer-form-slot', 'data-testid': 'mailer-' + prefix + '-form-slot' }));
      $box.append(el('div', { 'class': 'mailer-list', 'data-testid': 'mailer-' + prefix + '-list' }));
      $content.append($box);
      return $box;
    }

    // -- mailboxes

    /** Built when used: the texts come from self.i18n, ready only once Kommo has set the widget up. */
    function mailboxFields() {
      return [
      ['sender_name', 'text'], ['sender_email', 'email'], ['smtp_password', 'password'],
      ['smtp_host', 'text'], ['smtp_port', 'number'],
      ['smtp_security', 'select', [['ssl', 'SSL/TLS'], ['starttls', 'STARTTLS'], ['none', t('fields.security_none')]]],
      ['smtp_login', 'text'],
      ['imap_host', 'text'], ['imap_port', 'number'],
      ['imap_security', 'select', [['ssl', 'SSL/TLS'], ['starttls', 'STARTTLS'], ['none', t('fields.security_none')]]],
      ['imap_login', 'text'], ['imap_password', 'password'],
      ['signature', 'textarea'], ['rate_per_second', 'number'], ['daily_cap', 'number'],
      ['is_default', 'checkbox'], ['append_to_sent', 'checkbox']
    ];
    }

    function drawMailboxes($content) {
      var $box = listShell($content, 'mailbox', 'mailboxes.add');
      $box.find('[data-testid="mailer-mailbox-add"]').on('click', function () { mailboxForm($box, null); });
      var $list = $box.find('[data-testid="mailer-mailbox-list"]');
      loadMailboxes(true).then(function (mailboxes) {
        $list.empty();
        if (!mailboxes.length) {
          $list.append(el('div', { 'class': 'mailer-muted' }, t('mailboxes.none')));
        }
        mailboxes.forEach(function (mailbox) { $list.append(mailboxRow($box, mailbox)); });
      }).catch(function (error) { showError($box, error); });
    }

    /** The traffic light and its cause in plain words (the check's own words). */
    function mailboxCause(mailbox) {
      var check = mailbox.last_check;
      var status = mailbox.status || 'unchecked';
      var parts = [t('light.' + status + '_means')];
      if (check) {
        if (check.smtp && !check.smtp.ok && check.smtp.words) { parts.push('SMTP: ' + check.smtp.words); }
        if (check.imap && !check.imap.ok && check.imap.words) { parts.push('IMAP: ' + check.imap.words); }
        if (parts.length === 1 && check.summary) { parts.push(check.summary); }
      }
      if (mailbox.delivery_problem && mailbox.delivery_problem.cause) { parts.push(mailbox.delivery_problem.cause); }
      if (mailbox.last_append_error) { parts.push(mailbox.last_append_error); }
      return parts.join(' — ');
    }

    function mailboxRow($box, mailbox) {
      var status = mailbox.status || 'unchecked';
      var $row = el('div', { 'class': 'mailer-row', 'data-testid': 'mailer-mailbox-row', 'data-id': mailbox.id, 'data-status': status });
      $row.append(el('span', {
        'class': 'mailer-light mailer-light_' + status,
        'data-testid': 'mailer-mailbox-light',
        'data-status': status,
        title: t('light.' + status)
      }));
      var $text = el('div', { 'class': 'mailer-row__text' });
      var title = (mailbox.sender_name ? mailbox.sender_name + ' ' : '') + '<' + mailbox.sender_email + '>';
      if (mailbox.is_default) {
        title += ' · ' + t('mailboxes.default');
      }
      $text.append(el('div', { 'class': 'mailer-row__title' }, title));
      $text.append(el('div', { 'class': 'mailer-muted', 'data-testid': 'mailer-mailbox-cause' }, mailboxCause(mailbox)));
      $row.append($text);
      var $actions = el('div', { 'class': 'mailer-actions' });
      $actions.append(button('mailer-mailbox-check', 'mailboxes.check').on('click', function () {
        var $b = $(this).prop('disabled', true).text(t('mailboxes.checking'));
        api('POST', '/v1/mailboxes/' + encodeURIComponent(mailbox.id) + '/check', {}).then(function (updated) {
          $row.replaceWith(mailboxRow($box, updated));
        }).catch(function (error) {
          $b.prop('disabled', false).text(t('mailboxes.check'));
          showError($box, error);
        });
      }));
      $actions.append(button('mailer-mailbox-edit', 'common.edit').on('click', function () { mailboxForm($box, mailbox); }));
      $actions.append(button('mailer-mailbox-delete', 'common.delete').on('click', function () {
        if (!window.confirm(t('common.confirm_delete'))) { return; }
        api('DELETE', '/v1/mailboxes/' + encodeURIComponent(mailbox.id)).then(function () {
          $row.remove();
          state.mailboxes = null;
        }).catch(function (error) { showError($box, error); });
      }));
      return $row.append($actions);
    }

    function mailboxForm($box, mailbox) {
      var $slot = $box.find('[data-testid="mailer-mailbox-form-slot"]').empty();
      var $form = el('form', { 'class': 'mailer-form', 'data-testid': 'mailer-mailbox-form', autocomplete: 'off' });
      $form.append(el('h3', {}, t(mailbox ? 'mailboxes.edit' : 'mailboxes.add')));
      var $presets = el('div', { 'class': 'mailer-presets', 'data-testid': 'mailer-mailbox-presets' });
      var $hint = el('div', { 'class': 'mailer-muted', 'data-testid': 'mailer-mailbox-hint' });
      $form.append($presets).append($hint);
      mailboxFields().forEach(function (spec) {
        var value = mailbox ? mailbox[String(spec[0])] : undefined;
        if (!mailbox && spec[0] === 'append_to_sent') { value = true; }
        if (!mailbox && (spec[0] === 'smtp_security' || spec[0] === 'imap_security')) { value = 'ssl'; }
        $form.append(field('mailbox', spec, value));
      });
      $form.append(errorBox());
      $form.append(el('div', { 'class': 'mailer-actions' })
        .append(button('mailer-mailbox-save', 'common.save', true))
        .append(button('mailer-mailbox-cancel', 'common.cancel')));
      $slot.append($form);

      function applyPreset(preset) {
        var fields = (preset && preset.fields) || {};
        Object.keys(fields).forEach(function (name) {
          var $input = $form.find('[name="' + name + '"]');
          if ($input.is(':checkbox')) {
            $input.prop('checked', !!fields[name]);
          } else if ($input.length) {
            $input.val(fields[name] === null ? '' : String(fields[name]));
          }
        });
        $hint.text(preset ? (preset.name + (preset.hint ? ': ' + preset.hint : '') + (preset.app_password ? ' ' + t('mailboxes.app_password') : '')) : '');
      }

      function lookUp(email) {
        return api('GET', '/v1/mailboxes/presets' + (email ? '?email=' + encodeURIComponent(email) : '')).then(function (data) {
          $presets.empty();
          (data.providers || []).forEach(function (preset) {
            $presets.append(el('button', { type: 'button', 'class': 'mailer-chip', 'data-testid': 'mailer-mailbox-preset', 'data-key': preset.key }, preset.name)
              .on('click', function () { applyPreset(preset); }));
          });
          if (data.match) {
            applyPreset(data.match);
          }
        }).catch(function () { $presets.empty(); });
      }
      lookUp(mailbox ? '' : '');
      $form.find('[name="sender_email"]').on('change', function () {
        if (!mailbox) { lookUp(String($(this).val() || '')); }
      });
      $form.find('[data-testid="mailer-mailbox-cancel"]').on('click', function () { $slot.empty(); });
      $form.on('submit', function (event) { event.preventDefault(); });
      $form.find('[data-testid="mailer-mailbox-save"]').on('click', function () {
        var body = {};
        mailboxFields().forEach(function (spec) {
          var value = readField($form, spec[0], spec[1]);
          if (spec[1] === 'checkbox') {
            body[spec[0]] = value;
          } else if (value !== '' && value !== null) {
            body[spec[0]] = value;
          } else if (mailbox && (spec[0] === 'imap_host')) {
            body[spec[0]] = null;
          }
        });
        var $save = $(this).prop('disabled', true).text(t('mailboxes.checking'));
        clearError($form);
        var request = mailbox ?
          api('PATCH', '/v1/mailboxes/' + encodeURIComponent(mailbox.id), body) :
          api('POST', '/v1/mailboxes', body);
        request.then(function (saved) {
          state.mailboxes = null;
          $slot.empty();
          var $list = $box.find('[data-testid="mailer-mailbox-list"]');
          var $old = $list.find('[data-id="' + saved.id + '"]');
          if ($old.length) {
            $old.replaceWith(mailboxRow($box, saved));
          } else {
            $list.find('.mailer-muted').filter(function () { return !$(this).closest('.mailer-row').length; }).remove();
            $list.append(mailboxRow($box, saved));
          }
        }).catch(function (error) {
          $save.prop('disabled', false).text(t('common.save'));
          showError($form, error);
        });
      });
    }

    // -- templates

    function templateFields() {
      return [
      ['name', 'text'],
      ['to_client', 'select', [['main', t('templates.to_main')], ['all', t('templates.to_all')], ['none', t('templates.to_none')]]],
      ['to', 'text'], ['cc', 'text'], ['bcc', 'text'],
      ['subject', 'text'], ['html', 'textarea'],
      ['attachment_links', 'text'],
      ['is_public', 'checkbox'], ['disable_signature', 'checkbox'], ['track_opens', 'checkbox'],
      ['not_opened_after', 'number']
    ];
    }
    var LIST_FIELDS = { to: true, cc: true, bcc: true, attachment_links: true };

    function drawTemplates($content) {
      var $box = listShell($content, 'template', 'templates.add');
      $box.find('[data-testid="mailer-template-add"]').on('click', function () { templateForm($box, null); });
      var $list = $box.find('[data-testid="mailer-template-list"]');
      Promise.all([loadTemplates(true), loadTriggers(true)]).then(function (results) {
        $list.empty();
        if (!results[0].length) {
          $list.append(el('div', { 'class': 'mailer-muted' }, t('templates.none')));
        }
        results[0].forEach(function (template) {
          var $row = el('div', { 'class': 'mailer-row', 'data-testid': 'mailer-template-row', 'data-id': template.id });
          $row.append(el('div', { 'class': 'mailer-row__text' })
            .append(el('div', { 'class': 'mailer-row__title' }, template.name))
            .append(el('div', { 'class': 'mailer-muted' }, (template.subject || '') + (template.is_public ? ' · ' + t('fields.is_public') : ''))));
          var $actions = el('div', { 'class': 'mailer-actions' });
          $actions.append(button('mailer-template-edit', 'common.edit').on('click', function () {
            api('GET', '/v1/templates/' + encodeURIComponent(template.id)).then(function (full) {
              templateForm($box, full);
            }).catch(function (error) { showError($box, error); });
          }));
          if (template.can_edit !== false) {
            $actions.append(button('mailer-template-delete', 'common.delete').on('click', function () {
              if (!window.confirm(t('common.confirm_delete'))) { return; }
              api('DELETE', '/v1/templates/' + encodeURIComponent(template.id)).then(function () {
                $row.remove();
                state.templates = null;
              }).catch(function (error) { showError($box, error); });
            }));
          }
          $list.append($row.append($actions));
        });
      }).catch(function (error) { showError($box, error); });
    }

    function templateForm($box, template) {
      var $slot = $box.find('[data-testid="mailer-template-form-slot"]').empty();
      var $form = el('form', { 'class': 'mailer-form', 'data-testid': 'mailer-template-form' });
      var attachments = ((template && template.attachments) || []).map(function (a) { return { upload_id: a.upload_id, filename: a.filename, size: a.size }; });
      $form.append(el('h3', {}, t(template ? 'templates.edit' : 'templates.add')));
      templateFields().forEach(function (spec) {
        var value = template ? template[String(spec[0])] : undefined;
        if (LIST_FIELDS[spec[0]] && value) { value = value.join(', '); }
        if (spec[0] === 'not_opened_after' && value) { value = Math.round(value / 3600 * 100) / 100; }
        if (!template && spec[0] === 'track_opens') { value = true; }
        var $field = field('template', spec, value);
        if (spec[0] === 'not_opened_after') { $field.find('label').first().text(t('fields.not_opened_hours')); }
        $form.append($field);
        if (spec[0] === 'html') {
          $form.append(variablePicker($form));
        }
      });
      // attachments by upload
      var $files = el('div', { 'class': 'mailer-field' });
      $files.append(el('label', { 'class': 'mailer-field__label' }, t('fields.attachments')));
      $files.append(el('input', { type: 'file', multiple: true, 'data-testid': 'mailer-template-file' }));
      var $fileList = el('div', { 'data-testid': 'mailer-template-attachments' });
      $files.append($fileList);
      $form.append($files);
      function drawFiles() {
        $fileList.empty();
        attachments.forEach(function (file, index) {
          $fileList.append(el('div', { 'class': 'mailer-attachment' }, file.filename + ' ').append(
            el('a', { href: '#', 'class': 'mailer-link' }, '×').on('click', function (event) {
              event.preventDefault();
              attachments.splice(index, 1);
              drawFiles();
            })));
        });
      }
      drawFiles();
      $files.find('input[type=file]').on('change', function () {
        var $input = $(this);
        Array.prototype.slice.call(this.files || []).reduce(function (chain, file) {
          return chain.then(function () {
            return uploadFile(file, 'attachment').then(function (upload) {
              attachments.push({ upload_id: upload.id, filename: upload.filename, size: upload.size });
              drawFiles();
            });
          });
        }, Promise.resolve()).catch(function (error) { showError($form, error); }).then(function () { $input.val(''); });
      });
      // triggers on each event
      var $events = el('div', { 'class': 'mailer-events' });
      TRIGGER_EVENTS.forEach(function (eventName) {
        var chosen = (template && template.triggers && template.triggers[eventName]) || [];
        $events.append(triggerChecks('template', eventName, state.triggers || [], chosen));
      });
      $form.append($events);
      // preview on a chosen lead
      var $previewRow = el('div', { 'class': 'mailer-field mailer-inline' });
      $previewRow.append(el('label', { 'class': 'mailer-field__label' }, t('templates.preview_on')));
      $previewRow.append(el('input', { type: 'number', name: 'preview_lead', 'data-testid': 'mailer-template-preview-lead', placeholder: t('templates.lead_id') }));
      $previewRow.append(button('mailer-template-preview', 'compose.preview'));
      $form.append($previewRow);
      $form.append(el('div', { 'class': 'mailer-preview', 'data-testid': 'mailer-preview' }).hide()
        .append(el('div', { 'class': 'mailer-preview__subject', 'data-testid': 'mailer-preview-subject' }))
        .append(el('div', { 'class': 'mailer-warning', 'data-testid': 'mailer-preview-missing' }).hide())
        .append(el('iframe', { 'class': 'mailer-preview__frame', 'data-testid': 'mailer-preview-frame', sandbox: '', title: t('compose.preview') })));
      $form.append(errorBox());
      $form.append(el('div', { 'class': 'mailer-actions' })
        .append(button('mailer-template-save', 'common.save', true))
        .append(button('mailer-template-cancel', 'common.cancel')));
      $slot.append($form);

      $form.on('submit', function (event) { event.preventDefault(); });
      $form.find('[data-testid="mailer-template-cancel"]').on('click', function () { $slot.empty(); });
      $form.find('[data-testid="mailer-template-preview"]').on('click', function () {
        clearError($form);
        var lead = Number($form.find('[name="preview_lead"]').val());
        if (!lead) {
          showError($form, { status: 422, field: 'preview_lead', message: t('templates.lead_id') });
          return;
        }
        previewInto($form, {
          subject: String($form.find('[name="subject"]').val() || ''),
          html: String($form.find('[name="html"]').val() || ''),
          entity: { type: 'leads', id: lead }
        });
      });
      $form.find('[data-testid="mailer-template-save"]').on('click', function () {
        var body = {};
        templateFields().forEach(function (spec) {
          var value = readField($form, spec[0], spec[1]);
          if (LIST_FIELDS[spec[0]]) {
            body[spec[0]] = splitAddresses(value);
          } else if (spec[0] === 'not_opened_after') {
            body[spec[0]] = value === null ? null : Math.round(Number(value) * 3600);
          } else {
            body[spec[0]] = value;
          }
        });
        body.attachment_links = String(readField($form, 'attachment_links', 'text') || '').split(/[\s,]+/).filter(Boolean);
        body.attachments = attachments.map(function (a) { return { upload_id: a.upload_id }; });
        body.triggers = {};
        TRIGGER_EVENTS.forEach(function (eventName) {
          body.triggers[eventName] = $form.find('[name="trigger_' + eventName + '"]:checked').map(function () { return String($(this).val()); }).get();
        });
        var $save = $(this).prop('disabled', true);
        clearError($form);
        var request = template ?
          api('PATCH', '/v1/templates/' + encodeURIComponent(template.id), body) :
          api('POST', '/v1/templates', body);
        request.then(function () {
          state.templates = null;
          $slot.empty();
          notify(t('common.saved'));
          var $content = $box.parent();
          $content.empty();
          drawTemplates($content);
        }).catch(function (error) {
          $save.prop('disabled', false);
          showError($form, error);
        });
      });
    }

    /** The variable picker: the account's real fields when the API lists them, else the usual ones. */
    function variablePicker($form) {
      var $picker = el('div', { 'class': 'mailer-field mailer-variables', 'data-testid': 'mailer-template-variables' });
      $picker.append(el('label', { 'class': 'mailer-field__label' }, t('templates.variables')));
      var $select = el('select', { 'data-testid': 'mailer-variable-select' }).append(el('option', { value: '' }, t('templates.insert_variable')));
      $picker.append($select);
      loadVariables().then(function (variables) {
        variables.forEach(function (variable) {
          $select.append(el('option', { value: variable.value, 'data-testid': 'mailer-variable' }, variable.label + (variable.group ? ' (' + variable.group + ')' : '')));
        });
      });
      $select.on('change', function () {
        var value = String($select.val() || '');
        if (!value) { return; }
        var textarea = /** @type {HTMLTextAreaElement | undefined} */ ($form.find('[name="html"]').get(0));
        if (textarea) {
          var start = textarea.selectionStart || textarea.value.length;
          var end = textarea.selectionEnd || start;
          textarea.value = textarea.value.slice(0, start) + value + textarea.value.slice(end);
          textarea.selectionStart = textarea.selectionEnd = start + value.length;
          $(textarea).trigger('input');
        }
        $select.val('');
      });
      return $picker;
    }

    // -- triggers

    function drawTriggers($content) {
      var $box = listShell($content, 'trigger', 'triggers.add');
      $box.find('[data-testid="mailer-trigger-add"]').on('click', function () { triggerForm($box, null); });
      var $list = $box.find('[data-testid="mailer-trigger-list"]');
      Promise.all([loadTriggers(true), loadTemplates()]).then(function (results) {
        $list.empty();
        if (!results[0].length) {
          $list.append(el('div', { 'class': 'mailer-muted' }, t('triggers.none')));
        }
        results[0].forEach(function (trigger) {
          var $row = el('div', { 'class': 'mailer-row', 'data-testid': 'mailer-trigger-row', 'data-id': trigger.id });
          $row.append(el('div', { 'class': 'mailer-row__text' })
            .append(el('div', { 'class': 'mailer-row__title' }, trigger.name))
            .append(el('div', { 'class': 'mailer-muted' }, t('trigger_types.' + trigger.type) +
              (trigger.delay_seconds ? ' · ' + t('triggers.delay_n', { n: trigger.delay_seconds }) : ''))));
          $row.append(el('div', { 'class': 'mailer-actions' })
            .append(button('mailer-trigger-edit', 'common.edit').on('click', function () { triggerForm($box, trigger); }))
            .append(button('mailer-trigger-delete', 'common.delete').on('click', function () {
              if (!window.confirm(t('common.confirm_delete'))) { return; }
              api('DELETE', '/v1/triggers/' + encodeURIComponent(trigger.id)).then(function () { $row.remove(); state.triggers = null; })
                .catch(function (error) { showError($box, error); });
            })));
          $list.append($row);
        });
      }).catch(function (error) { showError($box, error); });
    }

    function triggerForm($box, trigger) {
      var $slot = $box.find('[data-testid="mailer-trigger-form-slot"]').empty();
      var $form = el('form', { 'class': 'mailer-form', 'data-testid': 'mailer-trigger-form' });
      $form.append(el('h3', {}, t(trigger ? 'triggers.edit' : 'triggers.add')));
      $form.append(field('trigger', ['name', 'text'], trigger && trigger.name));
      $form.append(field('trigger', ['type', 'select', TRIGGER_TYPES.map(function (type) { return [type, t('trigger_types.' + type)]; })], trigger ? trigger.type : 'task'));
      var $params = el('div', { 'data-testid': 'mailer-trigger-params' });
      $form.append($params);
      $form.append(field('trigger', ['delay_seconds', 'number'], trigger ? trigger.delay_seconds : 0));
      $form.append(el('div', { 'class': 'mailer-muted' }, t('triggers.text_help')));
      $form.append(errorBox());
      $form.append(el('div', { 'class': 'mailer-actions' })
        .append(button('mailer-trigger-save', 'common.save', true))
        .append(button('mailer-trigger-cancel', 'common.cancel')));
      $slot.append($form);
      function drawParams() {
        var type = String($form.find('[name="type"]').val());
        $params.empty();
        (TRIGGER_PARAMS[type] || []).forEach(function (spec) {
          var value = trigger && trigger.type === type && trigger.params ? trigger.params[spec[0]] : undefined;
          if (Array.isArray(value)) { value = value.join(', '); }
          var $field = field('trigger-param', spec, value);
          $field.find('label').first().text(t('trigger_params.' + spec[0]));
          $params.append($field);
        });
      }
      drawParams();
      $form.find('[name="type"]').on('change', drawParams);
      $form.on('submit', function (event) { event.preventDefault(); });
      $form.find('[data-testid="mailer-trigger-cancel"]').on('click', function () { $slot.empty(); });
      $form.find('[data-testid="mailer-trigger-save"]').on('click', function () {
        var type = String($form.find('[name="type"]').val());
        var params = {};
        (TRIGGER_PARAMS[type] || []).forEach(function (spec) {
          var value = readField($params, spec[0], spec[1]);
          if (value === '' || value === null) { return; }
          if ((spec[0] === 'add' || spec[0] === 'remove') && typeof value === 'string') {
            value = value.split(',').map(function (s) { return s.trim(); }).filter(Boolean);
          }
          if (spec[0] === 'responsible' && /^[0-9]+$/.test(String(value))) { value = Number(value); }
          params[spec[0]] = value;
        });
        var body = {
          name: readField($form, 'name', 'text'),
          type: type,
          params: params,
          delay_seconds: readField($form, 'delay_seconds', 'number') || 0
        };
        clearError($form);
        var request = trigger ?
          api('PATCH', '/v1/triggers/' + encodeURIComponent(trigger.id), body) :
          api('POST', '/v1/triggers', body);
        request.then(function () {
          state.triggers = null;
          var $content = $box.parent();
          $content.empty();
          drawTriggers($content);
        }).catch(function (error) { showError($form, error); });
      });
    }

    // -- trigger links

    function drawLinks($content) {
      var $box = listShell($content, 'link', 'links.add');
      $box.find('[data-testid="mailer-link-add"]').on('click', function () { linkForm($box, null); });
      var $list = $box.find('[data-testid="mailer-link-list"]');
      Promise.all([api('GET', '/v1/links'), loadTriggers(true)]).then(function (results) {
        var links = (results[0] && results[0].items) || [];
        $list.empty();
        if (!links.length) {
          $list.append(el('div', { 'class': 'mailer-muted' }, t('links.none')));
        }
        links.forEach(function (link) {
          var $row = el('div', { 'class': 'mailer-row', 'data-testid': 'mailer-link-row', 'data-id': link.id });
          $row.append(el('div', { 'class': 'mailer-row__text' })
            .append(el('div', { 'class': 'mailer-row__title' }, link.name + (link.once ? ' · ' + t('fields.once') : '')))
            .append(el('code', { 'data-testid': 'mailer-link-variable' }, link.variable || '{triggerlink:' + link.id + '}'))
            .append(el('div', { 'class': 'mailer-muted' }, link.target || t('links.thank_you'))));
          $row.append(el('div', { 'class': 'mailer-actions' })
            .append(button('mailer-link-edit', 'common.edit').on('click', function () { linkForm($box, link); }))
            .append(button('mailer-link-delete', 'common.delete').on('click', function () {
              if (!window.confirm(t('common.confirm_delete'))) { return; }
              api('DELETE', '/v1/links/' + encodeURIComponent(link.id)).then(function () { $row.remove(); })
                .catch(function (error) { showError($box, error); });
            })));
          $list.append($row);
        });
      }).catch(function (error) { showError($box, error); });
    }

    function linkForm($box, link) {
      var $slot = $box.find('[data-testid="mailer-link-form-slot"]').empty();
      var $form = el('form', { 'class': 'mailer-form', 'data-testid': 'mailer-link-form' });
      $form.append(el('h3', {}, t(link ? 'links.edit' : 'links.add')));
      $form.append(field('link', ['name', 'text'], link && link.name));
      $form.append(field('link', ['once', 'checkbox'], link && link.once));
      $form.append(field('link', ['target', 'text'], link && link.target));
      var $triggers = el('div', { 'class': 'mailer-field', 'data-testid': 'mailer-link-triggers' });
      $triggers.append(el('label', { 'class': 'mailer-field__label' }, t('fields.trigger_ids')));
      (state.triggers || []).forEach(function (trigger) {
        $triggers.append(el('label', { 'class': 'mailer-check' })
          .append(el('input', {
            type: 'checkbox',
            name: 'trigger_ids',
            value: trigger.id,
            'data-testid': 'mailer-link-trigger',
            checked: !!(link && (link.trigger_ids || []).indexOf(trigger.id) >= 0)
          }))
          .append(el('span', {}, trigger.name)));
      });
      $form.append($triggers);
      $form.append(errorBox());
      $form.append(el('div', { 'class': 'mailer-actions' })
        .append(button('mailer-link-save', 'common.save', true))
        .append(button('mailer-link-cancel', 'common.cancel')));
      $slot.append($form);
      $form.on('submit', function (event) { event.preventDefault(); });
      $form.find('[data-testid="mailer-link-cancel"]').on('click', function () { $slot.empty(); });
      $form.find('[data-testid="mailer-link-save"]').on('click', function () {
        var target = readField($form, 'target', 'text');
        var body = {
          name: readField($form, 'name', 'text'),
          once: readField($form, 'once', 'checkbox'),
          target: target || null,
          trigger_ids: $form.find('[name="trigger_ids"]:checked').map(function () { return String($(this).val()); }).get()
        };
        clearError($form);
        var request = link ?
          api('PATCH', '/v1/links/' + encodeURIComponent(link.id), body) :
          api('POST', '/v1/links', body);
        request.then(function () {
          var $content = $box.parent();
          $content.empty();
          drawLinks($content);
        }).catch(function (error) { showError($form, error); });
      });
    }

    // -- letters: queued, scheduled, unsent (resend), drafts

    var LETTER_TABS = ['queued', 'scheduled', 'failed', 'draft'];

    function drawLetters($content) {
      var $box = el('div', { 'class': 'mailer-section', 'data-testid': 'mailer-letters' });
      var $tabs = el('div', { 'class': 'mailer-subtabs' });
      LETTER_TABS.forEach(function (status) {
        $tabs.append(el('a', { href: '#', 'class': 'mailer-subtab', 'data-letters': status, 'data-testid': 'mailer-letters-' + status }, t('letters.' + status)));
      });
      $box.append($tabs).append(errorBox()).append(el('div', { 'class': 'mailer-list', 'data-testid': 'mailer-letters-list' }));
      $content.append($box);
      $tabs.on('click', '[data-letters]', function (event) {
        event.preventDefault();
        showLetters($box, String($(this).attr('data-letters')));
      });
      showLetters($box, 'queued');
    }

    function showLetters($box, status) {
      $box.find('[data-letters]').removeClass('mailer-tab_active');
      $box.find('[data-letters="' + status + '"]').addClass('mailer-tab_active');
      var $list = $box.find('[data-testid="mailer-letters-list"]').empty().attr('data-status', status);
      // a tab chosen while another's list is still loading: only the last one's answer is shown
      var ticket = (Number($box.data('letters-ticket')) || 0) + 1;
      $box.data('letters-ticket', ticket);
      clearError($box);
      var reload = function () { showLetters($box, status); };
      if (status === 'draft') {
        showDrafts($box, $list, ticket, reload);
        return;
      }
      api('GET', '/v1/messages?status=' + encodeURIComponent(status) + '&limit=100').then(function (data) {
        if ($box.data('letters-ticket') !== ticket) {
          return;
        }
        var items = (data && data.items) || [];
        items.forEach(function (message) {
          var $row = emailRow(message, reload);
          $row.attr('data-testid', 'mailer-letter-row');
          $row.find('[data-testid="mailer-email-retry"]').attr('data-testid', 'mailer-letter-retry');
          $row.find('[data-testid="mailer-email-cancel"]').attr('data-testid', 'mailer-letter-cancel');
          if (message.entity) {
            $row.find('.mailer-email__subject').append(el('span', { 'class': 'mailer-muted' }, ' · ' + t('entities.' + message.entity.type) + ' #' + message.entity.id));
          }
          $list.append($row);
        });
        if (!$list.children().length) {
          $list.append(el('div', { 'class': 'mailer-muted', 'data-testid': 'mailer-letters-empty' }, t('letters.none')));
        }
      }).catch(function (error) { showError($box, error); });
    }

    /**
     * Drafts: the server's (GET /v1/drafts: open in compose, send, delete) and the ones only
     * this browser keeps (a "Save draft" whose request failed, a window closed unsaved).
     */
    function showDrafts($box, $list, ticket, reload) {
      localDrafts().filter(function (draft) { return !draft.server_id; }).forEach(function (draft) {
        var $row = el('div', { 'class': 'mailer-row', 'data-testid': 'mailer-local-draft-row' });
        $row.append(el('div', { 'class': 'mailer-row__text' })
          .append(el('div', { 'class': 'mailer-row__title' }, draft.subject || t('panel.no_subject')))
          .append(el('div', { 'class': 'mailer-muted' }, (draft.entity ? t('entities.' + draft.entity.type) + ' #' + draft.entity.id + ' · ' : '') +
            formatDate(draft.saved_at) + ' · ' + t('letters.local_draft'))));
        $row.append(el('div', { 'class': 'mailer-actions' }).append(button('mailer-local-draft-delete', 'common.delete').on('click', function () {
          try {
            window.localStorage.removeItem(draft.key);
          } catch (ignore) {
            // storage unavailable: nothing was kept
          }
          $row.remove();
        })));
        $list.append($row);
      });
      api('GET', '/v1/drafts?limit=100').then(function (data) {
        if ($box.data('letters-ticket') !== ticket) {
          return;
        }
        ((data && data.items) || []).forEach(function (draft) {
          $list.append(draftRow($box, draft, reload));
        });
        if (!$list.children().length) {
          $list.append(el('div', { 'class': 'mailer-muted', 'data-testid': 'mailer-letters-empty' }, t('letters.none')));
        }
      }).catch(function (error) { showError($box, error); });
    }

    /** One server draft: subject, recipients, its card, when saved; Open, Send, Delete. */
    function draftRow($box, draft, reload) {
      var $row = el('div', { 'class': 'mailer-row', 'data-testid': 'mailer-draft-row', 'data-id': draft.id });
      var about = draft.entity ? ' · ' + t('entities.' + draft.entity.type) + ' #' + draft.entity.id : '';
      $row.append(el('div', { 'class': 'mailer-row__text' })
        .append(el('div', { 'class': 'mailer-row__title' }, draft.subject || t('panel.no_subject')))
        .append(el('div', { 'class': 'mailer-muted' }, ((draft.to || []).join(', ') || t('letters.no_recipients')) + about +
          ' · ' + formatDate(draft.updated_at))));
      var $actions = el('div', { 'class': 'mailer-actions' });
      $actions.append(button('mailer-draft-open', 'letters.open', true).on('click', function () {
        clearError($row);
        api('GET', '/v1/drafts/' + encodeURIComponent(draft.id)).then(function (full) {
          openCompose(full.entity || null, null, full, reload);
        }).catch(function (error) { showError($row, error); });
      }));
      $actions.append(button('mailer-draft-send', 'letters.send').on('click', function () {
        clearError($row);
        $row.find('button').prop('disabled', true);
        api('POST', '/v1/drafts/' + encodeURIComponent(draft.id) + '/send', {}).then(function (message) {
          dropLocalCopies(draft.id);
          notify(t(message && message.status === 'scheduled' ? 'compose.scheduled' : 'compose.sent'));
          reload();
        }).catch(function (error) {
          $row.find('button').prop('disabled', false);
          showError($row, error); // e.g. a draft without recipients: 422 naming `to`
        });
      }));
      $actions.append(button('mailer-draft-delete', 'common.delete').on('click', function () {
        if (!window.confirm(t('common.confirm_delete'))) { return; }
        clearError($row);
        api('DELETE', '/v1/drafts/' + encodeURIComponent(draft.id)).then(function () {
          dropLocalCopies(draft.id);
          $row.remove();
        }).catch(function (error) { showError($row, error); });
      }));
      $row.append($actions).append(errorBox());
      return $row;
    }

    // -- account settings: users, administrators, defaults

    var ACCOUNT_FIELDS = [
      ['default_rate_per_second', 'number'], ['default_daily_cap', 'number'],
      ['auto_emails_per_entity_per_day', 'number'], ['track_opens', 'checkbox'],
      ['filter_machine_traffic', 'checkbox'], ['opt_out_footer', 'checkbox']
    ];

    function managers() {
      var list = [];
      var data = window.APP && typeof APP.constant === 'function' ? APP.constant('managers') : null;
      if (data) {
        Object.keys(data).forEach(function (id) {
          var manager = data[id];
          list.push({ id: Number(manager.id || id), name: manager.title || manager.name || manager.login || String(id) });
        });
      }
      return list;
    }

    function drawAccount($content) {
      var $form = el('form', { 'class': 'mailer-form', 'data-testid': 'mailer-account-form' });
      $form.append(errorBox());
      $content.append($form);
      Promise.all([api('GET', '/v1/settings'), loadMe()]).then(function (results) {
        var settings = results[0] || {};
        var people = managers();
        [['allowed_user_ids', 'mailer-account-allowed'], ['admin_user_ids', 'mailer-account-admin']].forEach(function (pair) {
          var $group = el('div', { 'class': 'mailer-field', 'data-testid': pair[1] + '-list' });
          $group.append(el('label', { 'class': 'mailer-field__label' }, t('fields.' + pair[0])));
          var chosen = settings[pair[0]] || [];
          people.forEach(function (person) {
            $group.append(el('label', { 'class': 'mailer-check' })
              .append(el('input', { type: 'checkbox', name: pair[0], value: person.id, 'data-testid': pair[1], checked: chosen.indexOf(person.id) >= 0 }))
              .append(el('span', {}, person.name)));
          });
          if (!people.length) {
            $group.append(el('span', { 'class': 'mailer-muted' }, t('account.no_users')));
          }
          $form.append($group);
        });
        $form.append(el('div', { 'class': 'mailer-muted' }, t('account.everyone_when_empty')));
        ACCOUNT_FIELDS.forEach(function (spec) {
          var value = settings[spec[0]];
          if (spec[1] === 'checkbox' && (value === null || value === undefined)) { value = true; }
          $form.append(field('account', spec, value));
        });
        if (!results[1].is_admin) {
          $form.find('input, select, textarea').prop('disabled', true);
          $form.append(el('div', { 'class': 'mailer-warning' }, t('errors.reason.admin_only')));
        }
        $form.append(el('div', { 'class': 'mailer-actions' }).append(button('mailer-account-save', 'common.save', true)));
        function current() {
          var values = {};
          ['allowed_user_ids', 'admin_user_ids'].forEach(function (name) {
            var ids = $form.find('[name="' + name + '"]:checked').map(function () { return Number($(this).val()); }).get();
            values[name] = ids.length ? ids : null;
          });
          ACCOUNT_FIELDS.forEach(function (spec) { values[spec[0]] = readField($form, spec[0], spec[1]); });
          return values;
        }
        var shown = current();
        $form.find('[data-testid="mailer-account-save"]').prop('disabled', !results[1].is_admin).on('click', function () {
          // Only what the administrator changed: a setting left alone keeps following its default.
          var values = current();
          var body = {};
          Object.keys(values).forEach(function (name) {
            if (JSON.stringify(values[name]) !== JSON.stringify(shown[name])) {
              body[name] = values[name];
            }
          });
          if (!Object.keys(body).length) {
            notify(t('common.saved'));
            return;
          }
          clearError($form);
          api('PATCH', '/v1/settings', body).then(function () {
            shown = values;
            notify(t('common.saved'));
          })
            .catch(function (error) { showError($form, error); });
        });
      }).catch(function (error) { showError($form, error); });
    }

    // ---------------------------------------------------------------- the widget's settings modal

    function fillSettingsModal($body) {
      var $box = el('div', { 'class': 'mailer mailer-settings-modal', 'data-testid': 'mailer-settings-modal' });
      $box.append(el('p', {}, t('settings.api_url_help')));
      $box.append(el('p', { 'class': 'mailer-muted' }, t('settings.where_full_settings')));
      var $status = el('div', { 'data-testid': 'mailer-settings-status' });
      $box.append(button('mailer-settings-check', 'settings.check')).append($status);
      $box.find('[data-testid="mailer-settings-check"]').on('click', function () {
        $status.removeClass('mailer-error').text(t('panel.loading'));
        api('GET', '/v1/me').then(function (me) {
          $status.text(t('settings.connected', { user: me.user_id, account: me.subdomain }));
        }).catch(function (error) {
          $status.addClass('mailer-error').text(errorText(error));
        });
      });
      $($body).append($box);
    }

    // ---------------------------------------------------------------- digital pipeline action

    var DELAY_UNITS = [['1', 'dp.seconds'], ['60', 'dp.minutes'], ['3600', 'dp.hours'], ['86400', 'dp.days']];

    function dpInput(name) {
      var $scope = $('#widget_settings__fields_wrapper');
      if (!$scope.length) {
        $scope = $('.digital-pipeline__short-task_widget-style_' + code());
      }
      return $scope.find('input[name="' + name + '"]').first();
    }

    function renderDpSettings() {
      var $wrapper = $('#widget_settings__fields_wrapper');
      if (!$wrapper.length) {
        return;
      }
      ['template_id', 'mailbox_id', 'to', 'delay', 'secret'].forEach(function (name) {
        dpInput(name).closest('.widget_settings_block__item_field').hide();
        dpInput(name).hide();
      });
      view('dp', { units: DELAY_UNITS.map(function (unit) { return [unit[0], t(unit[1])]; }) }).then(function (html) {
        $wrapper.find('[data-testid="mailer-dp"]').remove();
        $wrapper.append(html);
        setUpDp($wrapper.find('[data-testid="mailer-dp"]'));
      });
    }

    function setUpDp($dialog) {
      var $template = $dialog.find('[name="mailer_dp_template"]');
      var $mailbox = $dialog.find('[name="mailer_dp_mailbox"]');
      var $to = $dialog.find('[name="mailer_dp_to"]');
      var $amount = $dialog.find('[name="mailer_dp_delay"]');
      var $unit = $dialog.find('[name="mailer_dp_delay_unit"]');
      var current = {
        template_id: String(dpInput('template_id').val() || ''),
        mailbox_id: String(dpInput('mailbox_id').val() || ''),
        to: String(dpInput('to').val() || ''),
        delay: Number(dpInput('delay').val() || 0)
      };
      $to.val(current.to);
      var unit = [86400, 3600, 60].filter(function (u) { return current.delay && current.delay % u === 0; })[0] || 1;
      $unit.val(String(unit));
      $amount.val(current.delay ? String(current.delay / unit) : '');

      function write(name, value) {
        var $input = dpInput(name);
        $input.val(value).trigger('change');
      }
      function writeDelay() {
        var amount = Number($amount.val() || 0);
        write('delay', amount > 0 ? String(Math.round(amount * Number($unit.val()))) : '');
      }
      $template.on('change', function () { write('template_id', String($template.val() || '')); });
      $mailbox.on('change', function () { write('mailbox_id', String($mailbox.val() || '')); });
      $to.on('input change', function () { write('to', String($to.val() || '')); });
      $amount.on('input change', writeDelay);
      $unit.on('change', writeDelay);

      Promise.all([loadTemplates(), loadMailboxes()]).then(function (results) {
        templateOptions($template, results[0], current.template_id, 'dp.pick_template');
        mailboxOptions($mailbox, results[1], current.mailbox_id, 'dp.responsible_mailbox');
      }).catch(function (error) { showError($dialog, error); });
      api('GET', '/v1/pipeline/settings').then(function (settings) {
        if (settings && settings.secret && dpInput('secret').val() !== settings.secret) {
          write('secret', settings.secret);
        }
      }).catch(function (error) { showError($dialog, error); });
    }

    // ---------------------------------------------------------------- Salesbot step

    var BOT_PARAMS = ['template_id', 'mailbox_id', 'to', 'delay'];

    function salesbotSettings($body, renderRow, params) {
      var values = (params && (params.send_template || params)) || {};
      var $box = el('div', { 'class': 'mailer mailer-bot', 'data-testid': 'mailer-bot' });
      var $template = el('select', { 'data-testid': 'mailer-bot-template', name: 'mailer_bot_template' });
      var $mailbox = el('select', { 'data-testid': 'mailer-bot-mailbox', name: 'mailer_bot_mailbox' });
      var $to = el('input', { type: 'text', 'data-testid': 'mailer-bot-to', name: 'mailer_bot_to', placeholder: '{{ contact.email }}' });
      var $delay = el('input', { type: 'number', min: 0, 'data-testid': 'mailer-bot-delay', name: 'mailer_bot_delay' });
      [['salesbot.template', $template], ['salesbot.mailbox', $mailbox], ['salesbot.to', $to], ['salesbot.delay', $delay]].forEach(function (pair) {
        var caption = t(pair[0]);
        var $row = typeof renderRow === 'function' ? $(renderRow(caption)) : el('div', {}).append(el('label', {}, caption));
        if (!$row.length) {
          $row = el('div', {}).append(el('label', {}, caption));
        }
        $box.append(el('div', { 'class': 'mailer-field' }).append($row).append(pair[1]));
      });
      $box.append(errorBox());
      $($body).append($box);

      function input(name) {
        return $($body).find('input[name="' + name + '"], input[name$="[' + name + ']"]').not($box.find('input')).first();
      }
      function write(name, value) {
        var $input = input(name);
        if ($input.length) {
          $input.val(value).trigger('change');
        }
      }
      BOT_PARAMS.forEach(function (name) {
        var $input = input(name);
        if ($input.length) {
          var $row = $input.parent();
          if ($row.is($body) || $row.has($box.get(0)).length) {
            $input.hide(); // the input sits right in the step's body: hide it alone
          } else {
            $row.hide();
          }
          if (!values[name]) { values[name] = $input.val(); }
        }
      });
      $to.val(values.to || '');
      $delay.val(values.delay || '0');
      $template.on('change', function () { write('template_id', String($template.val() || '')); });
      $mailbox.on('change', function () { write('mailbox_id', String($mailbox.val() || '')); });
      $to.on('input change', function () { write('to', String($to.val() || '')); });
      $delay.on('input change', function () { write('delay', String($delay.val() || '0')); });
      Promise.all([loadTemplates(), loadMailboxes()]).then(function (results) {
        templateOptions($template, results[0], values.template_id, 'dp.pick_template');
        mailboxOptions($mailbox, results[1], values.mailbox_id, 'dp.responsible_mailbox');
      }).catch(function (error) { showError($box, error); });
      return { exits: [{ code: 'success', title: t('salesbot.exit_success') }, { code: 'fail', title: t('salesbot.exit_fail') }] };
    }

    /** The bot's steps: a widget_request to Mailer's hook, then success/fail by {{json.status}}. */
    function salesbotSteps(handlerCode, params) {
      var settings = (params && (params[handlerCode] || params)) || {};
      var data = {};
      BOT_PARAMS.forEach(function (name) {
        if (settings[name] !== undefined && settings[name] !== null && String(settings[name]) !== '') {
          data[name] = String(settings[name]);
        }
      });
      var steps = [
        {
          question: [
            { handler: 'widget_request', params: { url: apiBase() + '/hooks/kommo/salesbot', data: data } },
            { handler: 'goto', params: { type: 'question', step: 1 } }
          ],
          require: []
        },
        {
          question: [
            {
              handler: 'conditions',
              params: {
                logic: 'or',
                conditions: [
                  { term1: '{{json.status}}', term2: 'queued', operation: '=' },
                  { term1: '{{json.status}}', term2: 'scheduled', operation: '=' }
                ],
                result: [{ handler: 'exits', params: { value: 'success' } }]
              }
            },
            { handler: 'exits', params: { value: 'fail' } }
          ],
          require: []
        }
      ];
      return JSON.stringify(steps);
    }

    // ---------------------------------------------------------------- Kommo's callbacks

    this.callbacks = {
      render: function () {
        if (CARD_ENTITY[area()]) {
          renderCardPanel();
        }
        return true;
      },
      init: function () {
        if (CARD_ENTITY[area()]) {
          fillCardPanel();
          if (typeof self.add_action === 'function') {
            self.add_action('email', function (data) {
              var entity = cardEntity();
              if (entity) {
                openCompose(entity, data && data.value);
              }
            });
          }
        }
        return true;
      },
      bind_actions: function () {
        $(document).off(ns()).on('click' + ns(), '[data-testid="mailer-new-email"]', function (event) {
          event.preventDefault();
          var entity = cardEntity();
          if (entity) {
            openCompose(entity, null);
          }
        }).on('click' + ns(), '[data-testid="mailer-emails-refresh"]', function (event) {
          event.preventDefault();
          var entity = cardEntity();
          if (entity) {
            loadEmails($('#mailer-panel'), entity);
          }
        });
        return true;
      },
      settings: function ($modalBody) {
        fillSettingsModal($modalBody);
        return true;
      },
      advancedSettings: function () {
        renderSettingsPage();
        return true;
      },
      onSave: function (event) {
        var fields = (event && event.fields) || {};
        var url = String(fields.api_url || '').trim();
        if (url && !/^https:\/\/|^http:\/\/(127\.0\.0\.1|localhost)(:[0-9]+)?(\/|$)/.test(url)) {
          notify(t('settings.api_url_invalid'));
          return false;
        }
        return true;
      },
      destroy: function () {
        $(document).off(ns());
        while (cleanups.length) {
          cleanups.pop()();
        }
        state.mailboxes = state.templates = state.triggers = null;
        return true;
      },
      leads: {
        selected: function () {
          openBulk('leads');
          return true;
        }
      },
      contacts: {
        selected: function () {
          openBulk('contacts');
          return true;
        }
      },
      companies: {
        selected: function () {
          openBulk('companies');
          return true;
        }
      },
      dpSettings: function () {
        renderDpSettings();
        return true;
      },
      salesbotDesignerSettings: function ($body, renderRow, params) {
        return salesbotSettings($body, renderRow, params);
      },
      onSalesbotDesignerSave: function (handlerCode, params) {
        return salesbotSteps(handlerCode, params);
      },
      onInstall: function () {
        return true;
      }
    };

    return this;
  };
});

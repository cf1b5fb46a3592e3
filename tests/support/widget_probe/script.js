/*
 * A probe widget for the host page's own tests (tests/e2e/test_widget_host.py): it calls each
 * platform method the host provides and writes what it got into the page, so a test can read
 * it. Not the product's widget (widget/), never uploaded.
 */
define(["jquery", "underscore", "lib/components/base/modal", "text!./templates/probe.twig"], function ($, _, Modal, probeTwig) {
  return function ProbeWidget() {
    var self = this;
    function api(method, path, data) {
      return self.$authorizedAjax({
        url: self.get_settings().api_url + path,
        method: method,
        contentType: "application/json",
        data: data ? JSON.stringify(data) : undefined,
        dataType: "json",
      });
    }
    function show(target, text) {
      $(target).append($('<div class="probe-line"></div>').text(text));
    }
    this.callbacks = {
      render: function () {
        var area = self.system().area;
        if (area === "lcard" || area === "ccard" || area === "comcard") {
          self.render_template({
            caption: { class_name: "probe-caption" },
            body: self.render({ data: probeTwig }, { hello: self.i18n("probe").hello, name: self.i18n("widget").name }),
          });
        }
        return true;
      },
      init: function () {
        show("body", "area " + self.system().area + " entity " + APP.getBaseEntity() + " widgets-area " + APP.getWidgetsArea());
        api("GET", "/v1/me").then(
          function (me) { show("body", "me " + me.user_id + " account " + me.account_id); },
          function (xhr) { show("body", "me failed " + xhr.status); }
        );
        if (APP.isCard()) {
          self.get_current_card_contacts_data().then(function (people) {
            show("body", "contacts " + _.flatten(_.pluck(people, "emails")).join(","));
          });
        }
        self.add_action("email", function (data) { show("body", "email action " + data.value); });
        return true;
      },
      bind_actions: function () {
        $(document).on("click.probe", "#probe-modal", function () {
          new Modal({ class_name: "probe-modal", init: function ($body) { $body.html('<p id="probe-modal-body">modal</p>'); } });
        });
        return true;
      },
      settings: function ($modal) {
        $modal.append('<p id="probe-settings">settings callback</p>');
        return true;
      },
      onSave: function (data) {
        show("body", "onSave " + data.fields.api_url);
        return true;
      },
      destroy: function () {},
      leads: {
        selected: function () {
          var s = self.list_selected();
          self.render_template({ caption: {}, body: '<div id="probe-selected">' + s.summary.items + " leads, " + s.summary.emails + " emails</div>" });
        },
      },
      contacts: {
        selected: function () {
          var s = self.list_selected();
          self.render_template({ caption: {}, body: '<div id="probe-selected">' + s.summary.items + " contacts</div>" });
        },
      },
      advancedSettings: function () {
        $("#work-area-" + self.get_settings().widget_code).append('<div id="probe-advanced">' + self.i18n("advanced").title + "</div>");
        return true;
      },
      dpSettings: function () {
        var $wrap = $("#widget_settings__fields_wrapper");
        api("GET", "/v1/pipeline/settings").then(function (answer) {
          $wrap.find('input[name="secret"]').val(answer.secret || "");
          $wrap.append('<div id="probe-dp">secret filled</div>');
        });
        return true;
      },
      salesbotDesignerSettings: function ($body, renderRow) {
        $body.append(renderRow("probe row"));
        return { exits: [{ code: "success", title: "Sent" }, { code: "fail", title: "Failed" }] };
      },
      onSalesbotDesignerSave: function (handler, params) {
        return JSON.stringify([{ question: [{ handler: "widget_request", params: { url: "/hooks/kommo/salesbot", data: { template_id: params.template_id } } }], require: [] }]);
      },
    };
    return this;
  };
});

// The part of Kommo's widget platform script.js uses (HOST-CONTRACT.md says the same in words;
// ../shared/reference/kommo-widget.md cites the sources). For `tsc --checkJs` only.

declare function define(deps: string[], factory: (...modules: any[]) => any): void;

interface KommoSystem {
  area: string;
  amouser_id?: number | string;
  subdomain?: string;
  domain?: string;
}

interface KommoWidgetSettings {
  widget_code?: string;
  api_url?: string;
  [name: string]: unknown;
}

interface KommoTemplate {
  render(params: object): string;
}

interface KommoSelection {
  selected?: Array<{ id: number | string; type?: string; emails?: string[] }>;
  summary?: { items?: number; emails?: number; phones?: number };
}

interface KommoCardContact {
  id: number;
  name?: string;
  emails?: Array<string | { value?: string; email?: string }>;
}

/** What Kommo mixes into the widget object (`self`). */
interface KommoWidget {
  callbacks: Record<string, unknown>;
  params: { path: string; widget_code?: string; version?: string };
  langs: Record<string, unknown>;
  system(): KommoSystem;
  get_settings(): KommoWidgetSettings;
  get_version?(): string;
  i18n(key: string): any;
  render(
    data: { href: string; base_path: string; v?: string; load: (template: KommoTemplate) => void },
    params: object
  ): unknown;
  render_template(options: { caption: { class_name: string }; body: string; render: string }): void;
  $authorizedAjax(options: JQuery.AjaxSettings): JQuery.jqXHR;
  get_current_card_contacts_data?(): Promise<KommoCardContact[]>;
  list_selected?(): KommoSelection;
  widgetsOverlay?(show: boolean): void;
  add_action?(type: 'email' | 'phone', handler: (data: { value?: string }) => void): void;
}

declare const APP: {
  data: { current_card?: { id: number | string } | false };
  notifications?: { show_message?(message: { header: string; text: string }): void };
  constant(name: string): any;
};

interface Window {
  APP?: typeof APP;
}

// The shape every dashboard in docker/grafana/dashboards/ must have.
//
// generate.mjs turns each dashboard into generated/<name>.ts:
//
//   export const dashboard = <the JSON, verbatim> satisfies ToriiDashboard;
//   dashboard satisfies GrafanaDashboard;
//
// As an object literal checked with `satisfies`, the JSON gets TypeScript's
// excess-property checks (a misspelt or unknown key fails, at any depth), and
// its string and number literals keep their literal types (so "type": "row"
// and "mode": "absolute" can be checked against unions and enums).
//
// GrafanaDashboard is @grafana/schema's own Dashboard. ToriiDashboard narrows
// it: the panel kinds we use with their plugin option types from
// @grafana/schema (timeseries, stat, rows), Prometheus queries with an `expr`,
// every data source the provisioned Prometheus one (uid "prometheus"), and
// schemaVersion 39.

import type {
  AnnotationQuery,
  Dashboard,
  DataQuery,
  FieldConfig,
  FieldConfigSource,
  GridPos,
  Panel,
  RowPanel,
  VariableModel,
} from "@grafana/schema";
import type * as Stat from "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as TimeSeries from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

// @grafana/schema types many string fields as TypeScript string enums
// (ThresholdsMode, LegendDisplayMode, ...). A JSON file holds their values
// ("absolute", "table"), which TypeScript never lets stand for a string enum
// member. Lit<T> replaces each string enum by the union of its values and
// leaves everything else as it is: the same set of valid JSON documents.
export type Lit<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Lit<U>>
      : T extends object
        ? { [K in keyof T]: Lit<T[K]> }
        : T;

export type GrafanaDashboard = Lit<Dashboard>;

/** The data source provisioned by docker/grafana/provisioning (uid "prometheus"). */
export interface Prometheus {
  type: "prometheus";
  uid: "prometheus";
}

/** A Prometheus query as Grafana stores it in a panel's `targets`. */
export interface PromQuery extends DataQuery {
  datasource: Prometheus;
  expr: string;
  refId: string;
  legendFormat?: string;
  range?: boolean;
  instant?: boolean;
  format?: "time_series" | "table" | "heatmap";
  editorMode?: "code" | "builder";
  interval?: string;
  exemplar?: boolean;
}

/** A Prometheus annotation: the query lives in `target` (Grafana 10+). */
export interface PromAnnotation extends Omit<Lit<AnnotationQuery<PromQuery>>, "datasource" | "builtIn" | "target"> {
  datasource: Prometheus;
  target: PromQuery;
}

/** Grafana's built-in "Annotations & Alerts". */
export interface BuiltInAnnotation extends Omit<Lit<AnnotationQuery>, "datasource" | "builtIn"> {
  builtIn: 1;
  datasource: { type: "grafana"; uid: "-- Grafana --" };
  type: "dashboard";
}

type FieldDefaults<Custom> = Omit<Lit<FieldConfig>, "custom"> & { custom?: Lit<Custom> };
type Fields<Custom> = Omit<Lit<FieldConfigSource>, "defaults"> & { defaults: FieldDefaults<Custom> };

interface QueryPanel extends Omit<Lit<Panel>, "type" | "options" | "fieldConfig" | "targets" | "datasource" | "gridPos"> {
  id: number;
  title: string;
  description: string;
  gridPos: GridPos;
  datasource: Prometheus;
  targets: [PromQuery, ...PromQuery[]];
}

export interface TimeSeriesPanel extends QueryPanel {
  type: "timeseries";
  options: Lit<TimeSeries.Options>;
  fieldConfig: Fields<TimeSeries.FieldConfig>;
}

export interface StatPanel extends QueryPanel {
  type: "stat";
  options: Lit<Stat.Options>;
  fieldConfig: Fields<Record<string, never>>;
}

/** An expanded row: its panels follow it in the dashboard's own list. */
export interface Row extends Omit<Lit<RowPanel>, "panels" | "gridPos" | "datasource"> {
  type: "row";
  title: string;
  collapsed: false;
  gridPos: GridPos;
  panels: [];
}

/** A query variable over the Prometheus data source (`label_values(...)`). */
export interface QueryVariable extends Omit<Lit<VariableModel>, "type" | "datasource" | "query"> {
  type: "query";
  datasource: Prometheus;
  query: string;
}

export interface ToriiDashboard extends Omit<GrafanaDashboard, "panels" | "templating" | "annotations" | "uid" | "title" | "schemaVersion"> {
  uid: string;
  title: string;
  description: string;
  tags: string[];
  schemaVersion: 39;
  annotations: { list: Array<BuiltInAnnotation | PromAnnotation> };
  templating: { list: QueryVariable[] };
  panels: Array<TimeSeriesPanel | StatPanel | Row>;
}

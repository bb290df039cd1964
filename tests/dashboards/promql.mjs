// Parses PromQL with Prometheus's own lezer grammar (@prometheus-io/lezer-promql)
// and says which metrics and labels each expression uses.
//
// stdin:  a JSON array of PromQL expressions (Grafana variables already replaced)
// stdout: a JSON array, one object per expression:
//   {"errors": [offset, ...],                       syntax errors (empty if it parsed)
//    "selectors": [{"metric": name or null,          each vector selector: its metric name
//                   "labels": [label, ...]}],         and the label names it matches on
//    "grouping": [label, ...]}                       labels in by (...), without (...), on (...), ignoring (...)
// Used by tests/integration/test_dashboards.py.

import { parser } from "@prometheus-io/lezer-promql";

function analyse(expr) {
  const result = { errors: [], selectors: [], grouping: [] };
  const text = (node) => expr.slice(node.from, node.to);
  const cursor = parser.parse(expr).cursor();
  do {
    const node = cursor.node;
    if (node.type.isError) {
      result.errors.push(node.from);
    } else if (node.name === "VectorSelector") {
      const metric = node.getChild("Identifier");
      const labels = [];
      const matchers = node.getChild("LabelMatchers");
      if (matchers) {
        for (let m = matchers.firstChild; m; m = m.nextSibling) {
          const name = m.getChild("LabelName") ?? m.getChild("QuotedLabelName");
          if (name) labels.push(text(name).replace(/^"|"$/g, ""));
        }
      }
      result.selectors.push({ metric: metric ? text(metric) : null, labels });
    } else if (node.name === "GroupingLabels") {
      for (const name of node.getChildren("LabelName")) result.grouping.push(text(name));
    }
  } while (cursor.next());
  return result;
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const exprs = JSON.parse(input);
  process.stdout.write(JSON.stringify(exprs.map(analyse)) + "\n");
});

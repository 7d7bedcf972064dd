//! A small builder for Grafana's dashboard JSON model (schemaVersion 39): panels laid out in
//! rows on the 24-column grid, unique panel ids, and a `${datasource}` variable so the files
//! import into any Grafana with any Prometheus data source.

use serde_json::{Value, json};

/// The dashboard JSON model version these files follow (Grafana 10.x).
pub const SCHEMA_VERSION: u32 = 39;
/// Grafana's grid is 24 columns wide.
const GRID_WIDTH: u32 = 24;

/// Every panel and variable query goes through the dashboard's data source variable.
fn datasource() -> Value {
    json!({ "type": "prometheus", "uid": "${datasource}" })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Stat,
    TimeSeries,
}

/// One panel before layout; [`Dashboard::line`] places it.
#[derive(Debug)]
pub struct Panel {
    kind: Kind,
    title: String,
    description: String,
    unit: &'static str,
    /// (expr, legendFormat)
    targets: Vec<(String, String)>,
    /// Steps as (from, color); the first has no lower bound.
    thresholds: Vec<(Option<f64>, &'static str)>,
    stacked: bool,
}

/// A single-number panel (last value of the query).
pub fn stat(title: &str, unit: &'static str, expr: String) -> Panel {
    Panel {
        kind: Kind::Stat,
        title: title.to_string(),
        description: String::new(),
        unit,
        targets: vec![(expr, String::new())],
        thresholds: vec![(None, "green")],
        stacked: false,
    }
}

/// A graph over time; add queries with [`Panel::target`].
pub fn timeseries(title: &str, unit: &'static str) -> Panel {
    Panel {
        kind: Kind::TimeSeries,
        title: title.to_string(),
        description: String::new(),
        unit,
        targets: Vec::new(),
        thresholds: vec![(None, "green")],
        stacked: false,
    }
}

impl Panel {
    pub fn target(mut self, expr: String, legend: &str) -> Self {
        self.targets.push((expr, legend.to_string()));
        self
    }

    pub fn describe(mut self, description: &str) -> Self {
        self.description = description.to_string();
        self
    }

    /// Colour steps: `[(None, "red"), (Some(0.95), "green")]` is red below 0.95.
    pub fn thresholds(mut self, steps: &[(Option<f64>, &'static str)]) -> Self {
        self.thresholds = steps.to_vec();
        self
    }

    /// Stack series (shares of a total, such as bytes by client).
    pub fn stacked(mut self) -> Self {
        self.stacked = true;
        self
    }

    fn to_json(&self, id: u32, grid: Value) -> Value {
        let targets: Vec<Value> = self
            .targets
            .iter()
            .zip(ref_ids())
            .map(|((expr, legend), ref_id)| {
                json!({
                    "datasource": datasource(),
                    "expr": expr,
                    "legendFormat": if legend.is_empty() { "__auto" } else { legend },
                    "range": true,
                    "refId": ref_id,
                })
            })
            .collect();
        let steps: Vec<Value> = self
            .thresholds
            .iter()
            .map(|(value, color)| json!({ "color": color, "value": value }))
            .collect();
        let mut defaults = json!({
            "unit": self.unit,
            "thresholds": { "mode": "absolute", "steps": steps },
            "color": { "mode": if self.kind == Kind::Stat { "thresholds" } else { "palette-classic" } },
        });
        let options = match self.kind {
            Kind::Stat => json!({
                "reduceOptions": { "calcs": ["lastNotNull"], "fields": "", "values": false },
                "colorMode": "value",
                "graphMode": "area",
                "justifyMode": "auto",
                "orientation": "auto",
                "textMode": "auto",
            }),
            Kind::TimeSeries => {
                defaults["custom"] = json!({
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": if self.stacked { 30 } else { 10 },
                    "showPoints": "never",
                    "spanNulls": false,
                    "stacking": { "mode": if self.stacked { "normal" } else { "none" }, "group": "A" },
                });
                json!({
                    "legend": { "displayMode": "table", "placement": "bottom", "showLegend": true, "calcs": ["mean", "max", "lastNotNull"] },
                    "tooltip": { "mode": "multi", "sort": "desc" },
                })
            }
        };
        json!({
            "id": id,
            "type": match self.kind { Kind::Stat => "stat", Kind::TimeSeries => "timeseries" },
            "title": self.title,
            "description": self.description,
            "datasource": datasource(),
            "gridPos": grid,
            "targets": targets,
            "fieldConfig": { "defaults": defaults, "overrides": [] },
            "options": options,
        })
    }
}

/// A legend placeholder for a label's value: `{{name}}`.
pub fn label(name: &str) -> String {
    format!("{{{{{name}}}}}")
}

/// Grafana's query ids: A, B, C, ...
fn ref_ids() -> impl Iterator<Item = String> {
    (b'A'..=b'Z').map(|c| char::from(c).to_string())
}

/// A dashboard under construction: panels are placed top to bottom, a line at a time.
pub struct Dashboard {
    uid: String,
    title: String,
    description: String,
    variables: Vec<Value>,
    panels: Vec<Value>,
    next_id: u32,
    /// The first free grid row.
    y: u32,
}

impl Dashboard {
    pub fn new(uid: &str, title: &str, description: &str) -> Self {
        let datasource_variable = json!({
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        });
        Dashboard {
            uid: uid.to_string(),
            title: title.to_string(),
            description: description.to_string(),
            variables: vec![datasource_variable],
            panels: Vec::new(),
            next_id: 1,
            y: 0,
        }
    }

    /// A variable filled from `label_values(<selector>, <label>)`, refreshed when the time
    /// range changes (so workloads that appeared recently are listed).
    pub fn variable(&mut self, name: &str, label: &str, selector: &str, of: &str) {
        let query = format!("label_values({selector}, {of})");
        self.variables.push(json!({
            "name": name,
            "label": label,
            "type": "query",
            "datasource": datasource(),
            "definition": query,
            "query": query,
            "refresh": 2,
            "sort": 1,
            "multi": false,
            "includeAll": false,
            "current": {},
            "hide": 0,
            "regex": "",
            "options": [],
        }));
    }

    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A full-width row header.
    pub fn row(&mut self, title: &str) {
        let id = self.id();
        self.panels.push(json!({
            "id": id,
            "type": "row",
            "title": title,
            "collapsed": false,
            "gridPos": { "h": 1, "w": GRID_WIDTH, "x": 0, "y": self.y },
            "panels": [],
        }));
        self.y += 1;
    }

    /// Panels side by side, `height` grid units tall, sharing the 24 columns evenly (the last
    /// one takes what division leaves over).
    pub fn line(&mut self, height: u32, panels: Vec<Panel>) {
        let n = u32::try_from(panels.len()).expect("a handful of panels per line");
        assert!((1..=GRID_WIDTH).contains(&n), "1 to 24 panels per line");
        let width = GRID_WIDTH / n;
        let mut x = 0;
        for (i, panel) in panels.into_iter().enumerate() {
            let w = if i + 1 == n as usize {
                GRID_WIDTH - x
            } else {
                width
            };
            let id = self.id();
            let grid = json!({ "h": height, "w": w, "x": x, "y": self.y });
            self.panels.push(panel.to_json(id, grid));
            x += w;
        }
        self.y += height;
    }

    pub fn to_json(&self) -> Value {
        json!({
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["weft", "istio"],
            "timezone": "browser",
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": true,
            "graphTooltip": 1,
            "time": { "from": "now-1h", "to": "now" },
            "refresh": "30s",
            "templating": { "list": self.variables },
            "annotations": { "list": [] },
            "links": [{
                "title": "weft dashboards",
                "type": "dashboards",
                "tags": ["weft"],
                "asDropdown": true,
                "includeVars": false,
                "keepTime": true,
            }],
            "panels": self.panels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fill_the_grid_without_overlap() {
        let mut d = Dashboard::new("u", "t", "");
        d.row("r");
        d.line(
            4,
            vec![
                stat("a", "none", "1".into()),
                stat("b", "none", "1".into()),
                stat("c", "none", "1".into()),
                stat("d", "none", "1".into()),
                stat("e", "none", "1".into()),
            ],
        );
        d.line(8, vec![timeseries("f", "s").target("up".into(), "")]);
        let json = d.to_json();
        let panels = json["panels"].as_array().unwrap();
        let grid: Vec<(u64, u64, u64, u64)> = panels
            .iter()
            .map(|p| {
                let g = &p["gridPos"];
                let n = |k: &str| g[k].as_u64().unwrap();
                (n("x"), n("y"), n("w"), n("h"))
            })
            .collect();
        assert_eq!(
            grid,
            [
                (0, 0, 24, 1),
                (0, 1, 4, 4),
                (4, 1, 4, 4),
                (8, 1, 4, 4),
                (12, 1, 4, 4),
                (16, 1, 8, 4),
                (0, 5, 24, 8)
            ]
        );
        let ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(panels[6]["targets"][0]["refId"], "A");
        assert_eq!(
            panels[6]["targets"][0]["datasource"]["uid"],
            "${datasource}"
        );
    }
}

//! Classification metrics: a confusion matrix, accuracy overall and per class.

use serde::Serialize;

/// `counts[target·classes + predicted]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Confusion {
    /// Number of classes.
    pub classes: usize,
    /// Row-major `[target, predicted]` counts.
    pub counts: Vec<u64>,
}

impl Confusion {
    /// An empty matrix.
    pub fn new(classes: usize) -> Self {
        Confusion {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Counts the arg-max of each row of `logits: [N, C]` against `targets`.
    pub fn add_logits(&mut self, logits: &[f32], targets: &[usize]) {
        let c = self.classes;
        for (row, &t) in logits.chunks_exact(c).zip(targets) {
            let pred = argmax(row);
            if t < c {
                self.counts[t * c + pred] += 1;
            }
        }
    }

    /// Images counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Correct predictions.
    pub fn correct(&self) -> u64 {
        (0..self.classes)
            .map(|i| self.counts[i * self.classes + i])
            .sum()
    }

    /// Top-1 accuracy in `[0, 1]` (0 when empty).
    pub fn accuracy(&self) -> f64 {
        self.correct() as f64 / self.total().max(1) as f64
    }

    /// Accuracy of each true class (recall), `None` for classes never seen.
    pub fn per_class(&self) -> Vec<Option<f64>> {
        (0..self.classes)
            .map(|i| {
                let row = &self.counts[i * self.classes..(i + 1) * self.classes];
                let n: u64 = row.iter().sum();
                (n > 0).then(|| row[i] as f64 / n as f64)
            })
            .collect()
    }

    /// A per-class table and the matrix, as text, with `names` for the classes.
    pub fn render(&self, names: &[String]) -> String {
        let c = self.classes;
        let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
        let w = (0..c)
            .map(|i| name(i).chars().count())
            .max()
            .unwrap_or(1)
            .max(5);
        let mut s = format!("{:<w$}  accuracy  images\n", "class");
        for (i, acc) in self.per_class().iter().enumerate() {
            let n: u64 = self.counts[i * c..(i + 1) * c].iter().sum();
            let a = acc.map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a));
            s.push_str(&format!("{:<w$}  {a:>8}  {n:>6}\n", name(i)));
        }
        s.push_str(&format!(
            "\nconfusion matrix (rows: true class, columns: predicted, in class order {})\n",
            (0..c).map(|i| i.to_string()).collect::<Vec<_>>().join(" ")
        ));
        let cw = self
            .counts
            .iter()
            .map(|v| v.to_string().len())
            .max()
            .unwrap_or(1)
            .max(2);
        for i in 0..c {
            let row: Vec<String> = self.counts[i * c..(i + 1) * c]
                .iter()
                .map(|v| format!("{v:>cw$}"))
                .collect();
            s.push_str(&format!("{:>2} {:<w$} {}\n", i, name(i), row.join(" ")));
        }
        s
    }
}

/// Index of the largest value (the first on ties); 0 for an empty row.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_counts_accuracy_and_per_class() {
        let mut m = Confusion::new(3);
        // predictions 0, 2, 2, 1 for targets 0, 2, 1, 1
        let logits = [5.0, 1.0, 0.0, 0.0, 1.0, 3.0, 0.0, 1.0, 2.0, 0.0, 4.0, 1.0];
        m.add_logits(&logits, &[0, 2, 1, 1]);
        assert_eq!(m.total(), 4);
        assert_eq!(m.correct(), 3);
        assert_eq!(m.per_class(), vec![Some(1.0), Some(0.5), Some(1.0)]);
        assert_eq!(m.counts[3 + 2], 1); // target 1, predicted 2
        let text = m.render(&["a".into(), "b".into(), "c".into()]);
        assert!(text.contains("50.00%") && text.contains("confusion matrix"));
    }
}

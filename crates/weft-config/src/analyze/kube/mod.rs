use super::Analyzer;

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![]
}

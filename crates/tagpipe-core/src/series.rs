//! The process-wide lists of the metric series tagpipe keeps outside the recorder (the
//! [`FixedHistogram`](crate::fixed_histogram::FixedHistogram)s and
//! [`StripedCounter`](crate::striped::StripedCounter)s): one series per name and label set,
//! made on first use and shared after, in the order made.

use std::sync::{Arc, Mutex, PoisonError};

/// What names a series: its metric's name and description, and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesId {
    /// The metric's name.
    pub name: &'static str,
    /// Its description.
    pub help: &'static str,
    /// The series' labels, in the order given.
    pub labels: Vec<(String, String)>,
}

impl SeriesId {
    /// The series `name{labels}`, described by `help`.
    pub fn new(name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Self {
        let labels = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        Self { name, help, labels }
    }
}

/// A metric series of a [`SeriesList`].
pub(crate) trait Series {
    /// What names it.
    fn id(&self) -> &SeriesId;
}

/// The series of one kind, in the order made.
pub(crate) struct SeriesList<T>(Mutex<Vec<Arc<T>>>);

impl<T: Series> SeriesList<T> {
    /// An empty list.
    pub(crate) const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    /// The series `name{labels}`: the one made before (a component rebuilt by a reload keeps
    /// counting in the same series), or the one `make` makes for it.
    pub(crate) fn register(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        make: impl FnOnce(SeriesId) -> T,
    ) -> Arc<T> {
        let id = SeriesId::new(name, help, labels);
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = list
            .iter()
            .find(|series| series.id().name == name && series.id().labels == id.labels)
        {
            return known.clone();
        }
        let made = Arc::new(make(id));
        list.push(made.clone());
        made
    }

    /// What `read` reads of every series, in the order made.
    pub(crate) fn read_all<R>(&self, read: impl Fn(&T) -> R) -> Vec<R> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|series| read(series))
            .collect()
    }
}

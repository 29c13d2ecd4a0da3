//! The process-wide lists of the metric series tagpipe keeps outside the recorder (the
//! [`FixedHistogram`](crate::fixed_histogram::FixedHistogram)s and
//! [`StripedCounter`](crate::striped::StripedCounter)s): one series per name and label set,
//! made on first use and shared after, in the order made.

use std::sync::{Arc, Mutex, PoisonError};

/// What names a series: its metric's name and description, and its labels.
#[derive(Debug)]
pub(crate) struct SeriesId {
    /// The metric's name.
    pub(crate) name: &'static str,
    /// Its description.
    pub(crate) help: &'static str,
    /// The series' labels, in the order given.
    pub(crate) labels: Vec<(String, String)>,
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
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = list
            .iter()
            .find(|series| series.id().name == name && series.id().labels == labels)
        {
            return known.clone();
        }
        let made = Arc::new(make(SeriesId { name, help, labels }));
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

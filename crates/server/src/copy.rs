//! Copying a whole database between stores (`chargegate db copy`): the source's export
//! and the target's import run side by side, joined by a small channel, so memory stays
//! bounded whatever the database's size.

use async_trait::async_trait;
use chargegate_core::Store;
use chargegate_core::dump::{CopySummary, DumpChunk, DumpSink, DumpSource};
use chargegate_core::store::{StoreError, StoreResult};
use tokio::sync::mpsc;

struct ChannelSink(mpsc::Sender<DumpChunk>);

#[async_trait]
impl DumpSink for ChannelSink {
    async fn send(&mut self, chunk: DumpChunk) -> StoreResult<()> {
        self.0
            .send(chunk)
            .await
            .map_err(|_| StoreError::Internal("the target stopped reading".into()))
    }
}

struct ChannelSource(mpsc::Receiver<DumpChunk>);

#[async_trait]
impl DumpSource for ChannelSource {
    async fn next(&mut self) -> Option<DumpChunk> {
        self.0.recv().await
    }
}

/// Copies every row of `source` into the empty `target`. The target commits only after
/// the source's last chunk, so a failure on either side leaves the target empty.
pub async fn copy(source: &dyn Store, target: &dyn Store) -> StoreResult<CopySummary> {
    let (tx, rx) = mpsc::channel(4);
    let export = async move {
        let mut sink = ChannelSink(tx);
        source.export_dump(&mut sink).await
        // `sink` drops here: if the export failed, the target sees the channel close
        // before `End` and rolls back.
    };
    let import = async move {
        let mut source = ChannelSource(rx);
        target.import_dump(&mut source).await
    };
    let (exported, imported) = tokio::join!(export, import);
    match (exported, imported) {
        (Ok(()), Ok(summary)) => Ok(summary),
        (Ok(()), Err(e)) | (Err(e), Ok(_)) => Err(e),
        // One side's failure stopped the other; say both, the cause is among them.
        (Err(out), Err(into)) => Err(StoreError::Internal(format!(
            "reading the source: {out}; writing the target: {into}"
        ))),
    }
}

/// Every chunk a store exports, for comparing two databases.
pub async fn dump(store: &dyn Store) -> StoreResult<Vec<DumpChunk>> {
    struct Collect(Vec<DumpChunk>);
    #[async_trait]
    impl DumpSink for Collect {
        async fn send(&mut self, chunk: DumpChunk) -> StoreResult<()> {
            self.0.push(chunk);
            Ok(())
        }
    }
    let mut all = Collect(Vec::new());
    store.export_dump(&mut all).await?;
    Ok(all.0)
}

//! PostgreSQL as the system of record: a test starts its own server
//! (`initdb` and `pg_ctl` as an unprivileged user, a free loopback port, a
//! temporary directory) and nodes of the real binary on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use headline_dedup::client::{Credentials, connect};
use headline_dedup::core::engine::{Changes, Counters};
use headline_dedup::pb;
use headline_dedup::store::{Lead, PostgresOptions, Store, StoreError, StoredSettings};

use crate::support::{Row, Served, fixture};

const FIXTURE: &str = "uci-2014-03-12-sample.jsonl";

/// A PostgreSQL server of its own, stopped and removed when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The server options `pg_ctl` starts it with.
    options: String,
}

/// The directory of PostgreSQL's server programs: `$PG_BIN`, the newest
/// of Debian's `/usr/lib/postgresql/N/bin`, or `PATH`.
fn server_programs() -> PathBuf {
    if let Some(bin) = std::env::var_os("PG_BIN") {
        return bin.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|bin| bin.join("initdb").exists());
    versions.sort();
    versions.pop().unwrap_or_default()
}

/// PostgreSQL refuses to run as root: as root, the server runs as the
/// `postgres` account of the package.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    pub fn start() -> Self {
        let bin = server_programs();
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let status = Command::new("chown").arg("postgres").arg(dir.path()).status().expect("chown");
            assert!(status.success(), "chown the PostgreSQL directory");
        }
        let data = dir.path().join("data");
        let initdb = as_server_user(&bin.join("initdb"))
            .args(["-U", "hd", "--auth=trust", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("initdb in {} (install PostgreSQL's server): {e}", bin.display()));
        assert!(initdb.status.success(), "initdb: {}", String::from_utf8_lossy(&initdb.stderr));
        // A port that was free a moment ago can be taken by then: try others.
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
                dir.path().display()
            );
            let started = as_server_user(&bin.join("pg_ctl"))
                .args(["-D"])
                .arg(&data)
                .args(["-o", &options, "-l"])
                .arg(dir.path().join("log"))
                .args(["-w", "-t", "60", "start"])
                .stdout(Stdio::null())
                .status()
                .expect("pg_ctl start");
            if started.success() {
                return Self { dir, bin, port, options };
            }
        }
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        panic!("PostgreSQL did not start:\n{log}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Restarts the server (every connection drops).
    pub fn restart(&self) {
        let status = as_server_user(&self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-o", &self.options, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-m", "fast", "-w", "-t", "60", "restart"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl restart");
        assert!(status.success(), "PostgreSQL restarts");
    }

    pub fn url(&self) -> String {
        format!("postgresql://hd@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL with psql.
    pub fn sql(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &self.url(), "-c", sql])
            .output()
            .expect("psql");
        assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// A node of the real binary on this database.
    pub fn node(&self) -> Served {
        Served::start_with(&["--postgres", &self.url(), "--lease-seconds", "2"])
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn headlines(prefix: &str, count: usize) -> Vec<pb::Headline> {
    fixture(FIXTURE)
        .iter()
        .take(count)
        .map(|row| {
            let mut headline = Row::headline(row);
            headline.id = format!("{prefix}{}", headline.id);
            headline
        })
        .collect()
}

async fn ingest(node: &Served, headlines: Vec<pb::Headline>) -> Result<Vec<pb::Assignment>, tonic::Status> {
    let request = pb::IngestRequest { namespace: String::new(), headlines };
    node.client().await.ingest(request).await.map(|r| r.into_inner().assignments)
}

async fn stats(node: &Served) -> pb::NamespaceStats {
    let stats = node.client().await.get_stats(pb::GetStatsRequest::default()).await.expect("stats").into_inner();
    stats.namespaces.into_iter().next().expect("a namespace")
}

#[tokio::test]
async fn a_namespace_in_postgresql_outlives_its_node_and_answers_as_it_did() {
    let postgres = Postgres::start();
    let batch = headlines("", 400);
    let mut first = postgres.node();
    let answered = ingest(&first, batch.clone()).await.expect("ingest");
    let before = stats(&first).await;
    assert!(first.terminate().success());
    assert_eq!(postgres.sql("SELECT count(*) FROM headline_dedup.records"), "400");

    let second = postgres.node();
    assert_eq!(stats(&second).await, before, "the namespace loads as it was");
    let again = ingest(&second, batch).await.expect("ingest on the new node");
    for (a, b) in answered.iter().zip(&again) {
        assert!(b.replayed, "{b:?}");
        assert_eq!((&a.headline_id, a.kind, &a.story_id), (&b.headline_id, b.kind, &b.story_id));
    }
}

#[tokio::test]
async fn a_backup_of_a_node_on_postgresql_restores_as_an_embedded_data_directory() {
    let postgres = Postgres::start();
    let batch = headlines("", 400);
    let node = postgres.node();
    let answered = ingest(&node, batch.clone()).await.expect("ingest");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("backup.redb");
    let output = Command::new(crate::support::binary())
        .args(["backup", "--addr", &node.addr, "--out", &out.display().to_string()])
        .output()
        .expect("run backup");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::rename(&out, data.join(headline_dedup::store::DB_FILE)).expect("restore the file");
    let restored = Served::durable(&data);
    assert_eq!(stats(&restored).await, stats(&node).await);
    let again = ingest(&restored, batch).await.expect("ingest on the restored copy");
    for (a, b) in answered.iter().zip(&again) {
        assert!(b.replayed, "{b:?}");
        assert_eq!((&a.headline_id, a.kind, &a.story_id), (&b.headline_id, b.kind, &b.story_id));
    }
}

#[tokio::test]
async fn one_node_at_a_time_writes_and_another_takes_over_when_it_dies_or_leaves() {
    let postgres = Postgres::start();
    let mut leader = postgres.node();
    let mut other = postgres.node();
    let first = ingest(&leader, headlines("a-", 100)).await.expect("the first writer leads");
    let forwarded = ingest(&other, headlines("b-", 10)).await.expect("a write on another node goes to the leader");
    assert!(forwarded.iter().all(|a| a.error.is_none() && !a.replayed), "{forwarded:?}");
    assert_eq!(stats(&leader).await.headlines, 110, "the leader stored it");
    assert_eq!(postgres.sql("SELECT leader FROM headline_dedup.leases"), leader.addr);

    // A crashed leader's connection goes with it: the other node takes
    // over on its next write, and has the dead leader's every commit.
    leader.kill();
    let killed = Instant::now();
    let again = ingest(&other, headlines("a-", 100)).await.expect("the other node takes over");
    assert!(killed.elapsed() < Duration::from_secs(2), "{:?}", killed.elapsed());
    assert!(again.iter().all(|a| a.replayed), "every acknowledged headline is there");
    let stories = |answers: &[pb::Assignment]| answers.iter().map(|a| a.story_id.clone()).collect::<Vec<_>>();
    assert_eq!(stories(&first), stories(&again));

    // An orderly shutdown hands the namespaces over at once.
    let third = postgres.node();
    assert!(other.terminate().success());
    let left = Instant::now();
    ingest(&third, headlines("c-", 10)).await.expect("the third node takes over");
    assert!(left.elapsed() < Duration::from_millis(500), "{:?}", left.elapsed());
    assert_eq!(stats(&third).await.headlines, 120);
    assert_eq!(postgres.sql("SELECT epoch FROM headline_dedup.leases"), "3");
}

#[tokio::test]
async fn a_paused_leader_loses_its_namespace_when_its_lease_runs_out_and_cannot_commit_after() {
    let postgres = Postgres::start();
    let (paused, other) = (postgres.node(), postgres.node());
    ingest(&paused, headlines("a-", 50)).await.expect("the first writer leads");
    let pid = paused.child.id().to_string();
    let signal = |name: &str| Command::new("kill").args([name, &pid]).status().expect("kill");
    assert!(signal("-STOP").success());
    // The write waits for the lease (2 s) to run out, then the other node
    // takes the namespace.
    let stopped = Instant::now();
    let taken = ingest(&other, headlines("b-", 20)).await.expect("the other node takes over");
    let failover = stopped.elapsed();
    assert!(taken.iter().all(|a| a.error.is_none()), "{taken:?}");
    assert!(failover > Duration::from_millis(1500) && failover < Duration::from_secs(4), "{failover:?}");
    assert!(signal("-CONT").success());
    // Woken, the old leader cannot commit: its write goes to the new one.
    let after = ingest(&paused, headlines("c-", 20)).await.expect("the woken node forwards");
    assert!(after.iter().all(|a| a.error.is_none()), "{after:?}");
    let replayed = ingest(&other, headlines("a-", 50)).await.expect("replay");
    assert!(replayed.iter().all(|a| a.replayed), "nothing acknowledged was lost");
    assert_eq!(postgres.sql("SELECT count(*) FROM headline_dedup.records"), "90");
    assert_eq!(postgres.sql("SELECT leader FROM headline_dedup.leases"), other.addr);
}

fn store(postgres: &Postgres, advertise: &str) -> Store {
    let options = PostgresOptions { url: postgres.url(), advertise: advertise.into(), lease: Duration::from_secs(60) };
    Store::postgres(options).expect("connect")
}

fn counters(next_seq: u64) -> Changes {
    Changes {
        counters: Counters { next_seq, next_story: 1, merges: 0, watermark: 0, next_change: 1 },
        ..Changes::default()
    }
}

#[test]
fn a_leader_whose_lease_was_taken_cannot_commit() {
    let postgres = Postgres::start();
    let (a, b) = (store(&postgres, "node-a"), store(&postgres, "node-b"));
    assert_eq!(a.lead("default").expect("lead"), Lead::Acquired);
    assert_eq!(a.lead("default").expect("lead"), Lead::Held);
    a.commit("default", &StoredSettings::default(), &counters(1)).expect("the leader commits");
    match b.lead("default") {
        Err(StoreError::NotLeader { leader, .. }) => assert_eq!(leader, "node-a"),
        other => panic!("a live lease is not taken: {other:?}"),
    }
    // As if node a were paused past its lease.
    postgres.sql("UPDATE headline_dedup.leases SET expires_at = now() - interval '1 second'");
    assert_eq!(b.lead("default").expect("an expired lease is taken"), Lead::Acquired);
    let fenced = a.commit("default", &StoredSettings::default(), &counters(2)).expect_err("the old leader is fenced");
    assert!(matches!(fenced, StoreError::NotLeader { .. }), "{fenced}");
    b.commit("default", &StoredSettings::default(), &counters(3)).expect("the new leader commits");
    let loaded = b.load().expect("load");
    assert_eq!(loaded[0].0.counters.next_seq, 3, "nothing of the fenced commit is stored");
    assert_eq!(postgres.sql("SELECT epoch || ' ' || version FROM headline_dedup.leases"), "2 2");
}

/// Every story of the default namespace a node holds, largest first, and
/// where each of a list of headlines is: what must agree between nodes.
pub async fn everything(node: &Served, ids: &[String]) -> (Vec<String>, Vec<String>) {
    let mut client = node.client().await;
    let (mut stories, mut token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_stories(pb::ListStoriesRequest {
                page_size: 500,
                order: pb::StoryOrder::Size.into(),
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        stories.extend(page.stories.iter().map(|s| format!("{} {} {}", s.story_id, s.size, s.canonical_text)));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let mut placed = Vec::new();
    for id in ids {
        let request = pb::GetHeadlineRequest { namespace: String::new(), id: id.clone() };
        match client.get_headline(request).await {
            Ok(found) => placed.push(format!("{id} {}", found.into_inner().story_id)),
            Err(status) => placed.push(format!("{id} {:?}", status.code())),
        }
    }
    (stories, placed)
}

#[tokio::test]
async fn followers_apply_every_commit_and_equal_the_leader_and_a_fresh_reload() {
    let postgres = Postgres::start();
    let nodes = [postgres.node(), postgres.node(), postgres.node()];
    let all = headlines("", 1000);
    let ids: Vec<String> = all.iter().map(|h| h.id.clone()).collect();
    for chunk in all.chunks(100) {
        ingest(&nodes[0], chunk.to_vec()).await.expect("ingest on the leader");
    }
    let mut client = nodes[0].client().await;
    let deleted = client
        .delete_headlines(pb::DeleteHeadlinesRequest { namespace: String::new(), ids: ids[..30].to_vec() })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.deleted_count, 30);
    let leader = everything(&nodes[0], &ids).await;
    assert!(leader.0.len() > 20, "{} stories", leader.0.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    for follower in &nodes[1..] {
        while everything(follower, &ids).await != leader {
            assert!(Instant::now() < deadline, "a follower did not catch up:\n{}", follower.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let fresh = postgres.node();
    assert_eq!(everything(&fresh, &ids).await, leader, "a fresh reload holds the same");
    let (_, metrics) = crate::support::http_get(&nodes[1].web_addr, "/metrics");
    assert!(metrics.contains("headline_dedup_leader{namespace=\"default\"} 0"), "{metrics}");
    assert!(metrics.contains("headline_dedup_follower_lag_seconds_count"), "{metrics}");
}

#[tokio::test]
async fn over_tls_a_write_goes_to_the_leader_only_with_a_ca_to_verify_it() {
    let postgres = Postgres::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = crate::security::certificates(dir.path());
    let url = postgres.url();
    let node = |peer_ca: &[&str]| {
        let mut args = vec!["--postgres", &url, "--lease-seconds", "2", "--tls-cert", &cert, "--tls-key", &key];
        args.extend(peer_ca);
        Served::start_checked(&args, &["--tls-ca", &ca])
    };
    let (leader, follower, without_ca) = (node(&["--tls-ca", &ca]), node(&["--tls-ca", &ca]), node(&[]));
    let credentials = Credentials { tls_ca: Some(ca.clone().into()), auth_token: None };
    let ingest = |node: &Served, headlines: Vec<pb::Headline>| {
        let (addr, credentials) = (node.addr.clone(), credentials.clone());
        async move {
            let mut client = connect(&addr, &credentials).await.expect("connect over TLS");
            let request = pb::IngestRequest { namespace: String::new(), headlines };
            client.ingest(request).await.map(|r| r.into_inner().assignments)
        }
    };
    ingest(&leader, headlines("a-", 20)).await.expect("the first writer leads");
    let forwarded = ingest(&follower, headlines("b-", 10)).await.expect("forwarded over TLS");
    assert!(forwarded.iter().all(|a| a.error.is_none() && !a.replayed), "{forwarded:?}");
    assert_eq!(postgres.sql("SELECT count(*) FROM headline_dedup.records"), "30");

    let refused = ingest(&without_ca, headlines("c-", 10)).await.expect_err("no CA to verify the leader with");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains(&leader.addr), "names the leader: {refused:?}");
    assert_eq!(postgres.sql("SELECT leader FROM headline_dedup.leases"), leader.addr);
}

#[tokio::test]
async fn a_follower_streams_the_leaders_story_changes_as_it_applies_them() {
    use crate::feed::{listed, next, watch};
    use pb::watch_stories_response::Event;

    let postgres = Postgres::start();
    let (leader, follower) = (postgres.node(), postgres.node());
    let all = headlines("", 600);
    ingest(&leader, all[..100].to_vec()).await.expect("ingest on the leader");
    let deadline = Instant::now() + Duration::from_secs(10);
    while follower
        .client()
        .await
        .get_stats(pb::GetStatsRequest::default())
        .await
        .map_or(0, |s| s.into_inner().namespaces.first().map_or(0, |n| n.headlines))
        < 100
    {
        assert!(Instant::now() < deadline, "the follower did not learn the namespace:\n{}", follower.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = follower.client().await;
    let mut stream = watch(&mut client, Some(0)).await.expect("watch on the follower");
    for chunk in all[100..].chunks(100) {
        ingest(&leader, chunk.to_vec()).await.expect("ingest on the leader");
    }
    let ids: Vec<String> = all[..20].iter().map(|h| h.id.clone()).collect();
    let mut writer = leader.client().await;
    writer.delete_headlines(pb::DeleteHeadlinesRequest { namespace: String::new(), ids }).await.expect("delete");
    let written = listed(&mut writer, 0).await;
    let latest = written.last().map(|c| c.sequence).expect("changes");
    let mut received = Vec::new();
    while received.last().map_or(0, |c: &pb::StoryChange| c.sequence) < latest {
        match next(&mut stream).await {
            Some(Ok(Event::Change(change))) => received.push(change),
            Some(Ok(Event::Progress(_))) => {}
            other => panic!("the follower's stream ended: {other:?}\n{}", follower.log()),
        }
    }
    assert_eq!(received, written, "the follower streams what the leader wrote");
    assert_eq!(listed(&mut client, 0).await, written, "and lists it");
}

#[tokio::test]
async fn a_namespace_changed_through_a_follower_is_changed_by_the_leader_and_followers_learn_it_and_its_deletion() {
    let postgres = Postgres::start();
    let (leader, follower) = (postgres.node(), postgres.node());
    ingest(&leader, headlines("", 50)).await.expect("ingest on the leader");
    let mut writer = leader.client().await;
    let raised = pb::NamespaceSettings { story_threshold: Some(0.55), ..Default::default() };
    let request = pb::UpdateNamespaceRequest { namespace: String::new(), settings: Some(raised) };
    let threshold = |node: &Served| {
        let addr = node.addr.clone();
        async move {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
            let mut client = pb::dedup_service_client::DedupServiceClient::new(channel.connect().await.ok()?);
            let request = pb::GetNamespaceRequest { namespace: String::new() };
            let namespace = client.get_namespace(request).await.ok()?.into_inner().namespace?;
            Some((namespace.settings?.story_threshold?, namespace.stats?.headlines))
        }
    };
    // Sent to the follower, once it knows the namespace, which forwards it
    // to the leader.
    let deadline = Instant::now() + Duration::from_secs(10);
    while threshold(&follower).await.map(|(_, headlines)| headlines) != Some(50) {
        assert!(Instant::now() < deadline, "the follower did not learn the namespace:\n{}", follower.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let updated = follower.client().await.update_namespace(request).await.expect("update through the follower");
    let updated = updated.into_inner().namespace.and_then(|n| n.settings).and_then(|s| s.story_threshold);
    assert_eq!(updated, Some(0.55));
    assert_eq!(threshold(&leader).await, Some((0.55, 50)), "the leader made the change");
    let deadline = Instant::now() + Duration::from_secs(10);
    while threshold(&follower).await != Some((0.55, 50)) {
        assert!(Instant::now() < deadline, "the follower did not learn the settings:\n{}", follower.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let request = pb::DeleteNamespaceRequest { namespace: String::new() };
    assert_eq!(writer.delete_namespace(request).await.expect("delete").into_inner().headlines, 50);
    assert_eq!(postgres.sql("SELECT count(*) FROM headline_dedup.records"), "0");
    while threshold(&follower).await.is_some() {
        assert!(Instant::now() < deadline, "the follower did not drop the namespace:\n{}", follower.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = postgres.node();
    assert!(threshold(&fresh).await.is_none(), "a fresh node does not load it");
}

//! A node's first words with its cluster, before its membership starts: the check that no
//! other process runs under its node id and, for a `BO_MASTER` client, its first
//! registration.
//!
//! Membership announces the node's generation, and a generation newer than a running
//! twin's would displace it on every peer: so the check comes first. A client's master makes
//! the check as it registers the client (see `cluster::master`), so a client's start costs
//! one round trip: the registration goes out, once the databases are known, in one sealed
//! datagram and is answered in one (see `transport::sealed_requests`), with no handshake.
//! Where that gets no answer (an older master, a clock a minute off, a lost datagram) it is
//! sent again over QUIC. A node without a master, or whose master does not answer, asks its
//! seeds instead (`Request::Lookup`).

use std::net::SocketAddr;
use std::time::Duration;

use tracing::debug;

use crate::identity::NodeIdentity;
use crate::transport::PeerLink;
use crate::wire::{Introduction, Request, Response};

/// How long each step of the check may take: a dial, a question.
const CHECK_LIMIT: Duration = Duration::from_secs(1);
/// How long the first registration may take once the master is dialled: its own check may
/// dial the endpoint it lists this id at ([`CHECK_LIMIT`] there too), then write the entry.
const FIRST_REGISTRATION_LIMIT: Duration = Duration::from_secs(3);
/// How long the sealed registration's answer is waited for before it is sent over QUIC: a
/// round trip and the master's fsync, on a slow disk too.
const SEALED_ANSWER_LIMIT: Duration = Duration::from_millis(200);

/// Who the node is, and whom it asks.
pub struct FirstContact<'a> {
    pub link: &'a PeerLink,
    pub identity: &'a NodeIdentity,
    /// The endpoint this node advertises (`BO_ENDPOINT`).
    pub endpoint: SocketAddr,
    pub host: &'a str,
    /// Every seed's and master's address.
    pub seeds: &'a [SocketAddr],
    /// The first master's first address, registered with first.
    pub master: Option<SocketAddr>,
}

/// What was done while the data directory opened.
pub enum Early {
    /// Nothing yet: the master is asked once the databases are known.
    MasterToAsk,
    /// With no master, the seeds were asked: another process answering as this id, and where.
    SeedsAsked { twin: Option<SocketAddr> },
}

/// What the first contact found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Another process answering as this node id, and where: the node must not start.
    pub twin: Option<SocketAddr>,
    /// The node id of the master that registered this node.
    pub registered_with: Option<String>,
}

impl FirstContact<'_> {
    /// The part that needs no databases: ask the seeds when there is no master. (A master
    /// is not dialled ahead: the sealed registration needs no connection, and a handshake
    /// beside it would only compete with it for the CPU on both sides.)
    pub async fn early(&self) -> Early {
        match self.master {
            Some(_) => Early::MasterToAsk,
            None => Early::SeedsAsked {
                twin: self.twin_among(self.seeds).await,
            },
        }
    }

    /// The rest, once `databases` (all of this node's) are known: the master's registration,
    /// or the seeds' answers when the master gives none.
    pub async fn finish(&self, early: Early, databases: Vec<String>) -> Outcome {
        let master = match (early, self.master) {
            (Early::SeedsAsked { twin }, _) => {
                return Outcome {
                    twin,
                    registered_with: None,
                }
            }
            (Early::MasterToAsk, Some(master)) => master,
            (Early::MasterToAsk, None) => return self.without_master().await,
        };
        let registration = Request::Register {
            node: self.introduction(databases),
        };
        let answer = match self
            .link
            .request_sealed(master, &registration, SEALED_ANSWER_LIMIT)
            .await
        {
            Ok(answer) => Ok(answer),
            Err(e) => {
                debug!(master = %master, error = %e, "the sealed registration got no answer; registering over QUIC");
                if !self.link.connect(master, CHECK_LIMIT).await {
                    return self.without_master().await;
                }
                self.link
                    .request(master, &registration, FIRST_REGISTRATION_LIMIT)
                    .await
            }
        };
        match answer {
            Ok(Response::Hello { node }) => Outcome {
                twin: None,
                registered_with: Some(node.node_id),
            },
            Ok(Response::NodeIdInUse { endpoint }) => Outcome {
                twin: Some(endpoint),
                registered_with: None,
            },
            // An older master, or one that cannot write: the seeds, the master among them,
            // check the id, and the registration is retried in the background.
            Ok(_) => Outcome {
                twin: self.twin_among(self.seeds).await,
                registered_with: None,
            },
            Err(_) => self.without_master().await,
        }
    }

    /// The check through the seeds other than the master that gave no answer.
    async fn without_master(&self) -> Outcome {
        let others: Vec<SocketAddr> = self
            .seeds
            .iter()
            .copied()
            .filter(|seed| Some(*seed) != self.master)
            .collect();
        Outcome {
            twin: self.twin_among(&others).await,
            registered_with: None,
        }
    }

    fn introduction(&self, databases: Vec<String>) -> Introduction {
        Introduction {
            node_id: self.identity.node_id.clone(),
            generation: self.identity.generation,
            endpoint: self.endpoint,
            host: self.host.to_string(),
            databases,
        }
    }

    /// Another process alive under this node's id, elsewhere: asks up to 3 `seeds` whether
    /// they list the id alive at another endpoint, and if one does, whether something answers
    /// there as that id (see [`PeerLink::answers_as`]).
    async fn twin_among(&self, seeds: &[SocketAddr]) -> Option<SocketAddr> {
        let lookup = Request::Lookup {
            node_id: self.identity.node_id.clone(),
        };
        for seed in seeds.iter().take(3) {
            let Ok(Response::Lookup(Some((endpoint, _generation)))) =
                self.link.request(*seed, &lookup, CHECK_LIMIT).await
            else {
                continue;
            };
            if endpoint == self.endpoint {
                continue;
            }
            let us = self.introduction(Vec::new());
            let answers = self
                .link
                .answers_as(endpoint, &self.identity.node_id, us, CHECK_LIMIT)
                .await;
            return answers.then_some(endpoint);
        }
        None
    }
}

//! A client-side rate limit on every request to the API server (`--kube-api-qps`,
//! `--kube-api-burst`), like client-go's: kube-rs has none, and a mass failover must not
//! starve the API server of the capacity the rest of the cluster needs for the same event.
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tower::{Layer, Service};

/// The User-Agent of the operator's requests, so API server audit logs and metrics name it
/// (kube-rs sends none).
pub fn user_agent_layer<B>(
) -> tower::util::MapRequestLayer<impl FnMut(http::Request<B>) -> http::Request<B> + Clone> {
    tower::util::MapRequestLayer::new(|mut request: http::Request<B>| {
        request.headers_mut().insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("edgeshift/", env!("CARGO_PKG_VERSION"))),
        );
        request
    })
}

/// Requests per second and burst; `None` when the limit is off (qps 0).
pub fn quota(qps: u32, burst: u32) -> Option<Quota> {
    let qps = NonZeroU32::new(qps)?;
    let burst = NonZeroU32::new(burst.max(qps.get())).unwrap_or(qps);
    Some(Quota::per_second(qps).allow_burst(burst))
}

/// A tower layer that holds each request until the shared token bucket has a token.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl RateLimitLayer {
    pub fn new(quota: Quota) -> Self {
        RateLimitLayer {
            limiter: Arc::new(RateLimiter::direct(quota)),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            limiter: self.limiter.clone(),
            waiting: None,
            permitted: false,
        }
    }
}

type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The service [`RateLimitLayer`] makes: not ready until a token is taken.
pub struct RateLimited<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
    waiting: Option<Wait>,
    /// A token was taken for the next call.
    permitted: bool,
}

impl<S, R> Service<R> for RateLimited<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permitted {
            let limiter = self.limiter.clone();
            let wait = self
                .waiting
                .get_or_insert_with(|| Box::pin(async move { limiter.until_ready().await }));
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.waiting = None;
            self.permitted = true;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.permitted = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use tower::ServiceExt;

    #[test]
    fn zero_qps_turns_the_limit_off_and_burst_is_at_least_qps() {
        assert!(quota(0, 10).is_none());
        let q = quota(50, 10).expect("quota");
        assert_eq!(q.burst_size().get(), 50);
        assert_eq!(quota(50, 100).expect("quota").burst_size().get(), 100);
    }

    #[tokio::test]
    async fn requests_beyond_the_burst_wait_for_tokens() {
        let layer = RateLimitLayer::new(
            quota(20, 5)
                .expect("quota")
                .allow_burst(NonZeroU32::new(5).expect("non-zero")),
        );
        let mut svc = layer.layer(tower::service_fn(|n: u32| async move {
            Ok::<_, std::convert::Infallible>(n)
        }));
        let start = Instant::now();
        for n in 0..15 {
            let got = svc
                .ready()
                .await
                .expect("ready")
                .call(n)
                .await
                .expect("call");
            assert_eq!(got, n);
        }
        // 5 at once, then 10 more at 20/s: about 0.5 s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
}

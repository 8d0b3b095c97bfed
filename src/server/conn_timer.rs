//! hyper's timer for one connection, keeping one tokio `Sleep` and moving it to each new
//! deadline. hyper arms a header-read timer for every request on a kept-alive connection
//! and drops it once the head has arrived. With hyper-util's `TokioTimer`, each of those is
//! a boxed timer registered in tokio's timer wheel and taken out again, under the wheel's
//! lock both times, on every request. tokio moves a registered timer to a later deadline
//! with one atomic update, so the connection's dropped timer is kept and reused instead
//! (docs/bench.md, ninth round). Deadlines are kept exactly: the reused timer fires at its
//! old deadline, sees the new one and waits on.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

type TokioSleep = Pin<Box<tokio::time::Sleep>>;

/// One per connection (`Default`), handed to hyper's connection builder.
#[derive(Clone, Default)]
pub struct ConnectionTimer {
    /// The last dropped timer, ready to be moved to the next deadline.
    spare: Arc<Mutex<Option<TokioSleep>>>,
}

impl Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
        let sleep = match spare {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Box::pin(ReusedSleep {
            sleep: Some(sleep),
            spare: self.spare.clone(),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<ReusedSleep>() {
            Some(ours) => ours.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    fn now(&self) -> Instant {
        // tokio's clock, so a test's paused time applies.
        tokio::time::Instant::now().into_std()
    }
}

/// A timer lent to hyper; dropped, it goes back to its connection for the next deadline.
struct ReusedSleep {
    /// Always Some until dropped.
    sleep: Option<TokioSleep>,
    spare: Arc<Mutex<Option<TokioSleep>>>,
}

impl ReusedSleep {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        if let Some(sleep) = &mut self.get_mut().sleep {
            sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
        }
    }
}

impl Future for ReusedSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Sleep for ReusedSleep {}

impl Drop for ReusedSleep {
    fn drop(&mut self) {
        let Some(sleep) = self.sleep.take() else {
            return;
        };
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        // One spare is enough: hyper's HTTP/1 server keeps one timer at a time.
        if spare.is_none() {
            *spare = Some(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        sleep.as_mut().poll(&mut cx).is_ready()
    }

    /// Waits for `sleep` (at most 10 s) and checks it did not end before `deadline`.
    async fn ends_at(sleep: Pin<Box<dyn Sleep>>, deadline: Instant) {
        tokio::time::timeout(Duration::from_secs(10), sleep)
            .await
            .expect("the timer never fired");
        assert!(Instant::now() >= deadline, "fired before its deadline");
    }

    /// A reused timer keeps each new deadline: later than its old one (moved in place),
    /// earlier (registered again), after its old deadline has passed, and when hyper resets
    /// it; two at once each get their own.
    #[tokio::test]
    async fn a_reused_timer_fires_at_each_new_deadline_and_not_before() {
        let timer = ConnectionTimer::default();
        let ms = Duration::from_millis;

        let mut first = timer.sleep_until(Instant::now() + ms(200));
        assert!(!fired(&mut first));
        drop(first);
        assert!(
            timer.spare.lock().unwrap().is_some(),
            "kept for the next one"
        );

        // Later than the old deadline: moved in place, and not fired at the old one.
        let deadline = Instant::now() + ms(400);
        let later = timer.sleep_until(deadline);
        assert!(
            timer.spare.lock().unwrap().is_none(),
            "the spare was reused"
        );
        ends_at(later, deadline).await;
        assert!(timer.spare.lock().unwrap().is_some());

        // The same timer, fired already, for an earlier stretch.
        let deadline = Instant::now() + ms(50);
        ends_at(timer.sleep_until(deadline), deadline).await;

        // hyper's own reset moves a timer it holds, here further out.
        let mut held = timer.sleep(ms(20));
        let deadline = Instant::now() + ms(150);
        timer.reset(&mut held, deadline);
        ends_at(held, deadline).await;

        // Two at once: the second gets a timer of its own.
        let (a_at, b_at) = (Instant::now() + ms(50), Instant::now() + ms(120));
        let (a, b) = (timer.sleep_until(a_at), timer.sleep_until(b_at));
        tokio::join!(ends_at(a, a_at), ends_at(b, b_at));
    }
}

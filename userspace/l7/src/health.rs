//! The health-check state of one server, HAProxy's way: a server starts UP; `fall`
//! consecutive failed checks take it DOWN, `rise` consecutive good ones bring it back.
//! A result that agrees with the current state resets the count.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    WentUp,
    WentDown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    pub rise: u32,
    pub fall: u32,
    up: bool,
    /// Consecutive results against the current state.
    against: u32,
}

impl Health {
    pub fn new(rise: u32, fall: u32) -> Self {
        Health { rise: rise.max(1), fall: fall.max(1), up: true, against: 0 }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one check result; returns the transition it caused, if any.
    pub fn observe(&mut self, ok: bool) -> Option<Transition> {
        if ok == self.up {
            self.against = 0;
            return None;
        }
        self.against += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.against < needed {
            return None;
        }
        self.up = ok;
        self.against = 0;
        Some(if ok { Transition::WentUp } else { Transition::WentDown })
    }

    /// HAProxy's `check_health`: rise+fall-1 when steadily UP, down by one per failure
    /// while going down; 0 when steadily DOWN, up by one per success while going up.
    pub fn health(&self) -> u32 {
        if self.up {
            self.rise + self.fall - 1 - self.against
        } else {
            self.against
        }
    }

    /// The status column of HAProxy's stats: "UP", "DOWN", "UP 1/3" (going down: one
    /// failure of the three that take it down), "DOWN 1/2" (going up).
    pub fn status(&self) -> String {
        match (self.up, self.against) {
            (true, 0) => "UP".into(),
            (false, 0) => "DOWN".into(),
            (true, n) => format!("UP {n}/{}", self.fall),
            (false, n) => format!("DOWN {n}/{}", self.rise),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_failures_take_it_down_and_rise_successes_bring_it_back() {
        let mut h = Health::new(2, 3);
        assert!(h.is_up());
        assert_eq!(h.observe(false), None);
        assert_eq!(h.status(), "UP 1/3");
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), Some(Transition::WentDown));
        assert_eq!(h.status(), "DOWN");
        assert_eq!(h.observe(true), None);
        assert_eq!(h.status(), "DOWN 1/2");
        assert_eq!(h.observe(true), Some(Transition::WentUp));
        assert_eq!(h.status(), "UP");
    }

    #[test]
    fn a_good_check_resets_a_failing_streak() {
        let mut h = Health::new(2, 3);
        h.observe(false);
        h.observe(false);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.status(), "UP");
        h.observe(false);
        h.observe(false);
        assert!(h.is_up(), "the streak started again");
        // Flapping never changes state if it never reaches rise/fall in a row.
        let mut f = Health::new(2, 2);
        for i in 0..20 {
            assert_eq!(f.observe(i % 2 == 0), None);
        }
    }

    #[test]
    fn rise_and_fall_of_one_flip_at_once() {
        let mut h = Health::new(1, 1);
        assert_eq!(h.observe(false), Some(Transition::WentDown));
        assert_eq!(h.observe(true), Some(Transition::WentUp));
    }
}

//! Keeps the prompt's own passage delimiters out of an answer.
//!
//! Small models sometimes copy the structure they were shown: an answer from the embedded 135M model
//! ended with `<<<end of passage 3 k2f...>>>`. Quoted passages can hold no `<<<` (`prompt::defuse`), so
//! such text in an answer comes from the prompt's frame, never from a document, and is dropped. The
//! answer arrives in pieces, so text that may be the start of a delimiter is held back until it
//! proves to be one (dropped) or not (shown unchanged).

/// The longest delimiter worth waiting for: `<<<end of passage NNNN nonce>>>` with a nonce of up to
/// 48 characters. Anything longer between `<<<` and `>>>` is shown as written.
const LONGEST: usize = 80;

/// Whether `inside` (the text between `<<<` and `>>>`) is one of the prompt's delimiters:
/// `passage N nonce` or `end of passage N nonce`, the nonce letters and digits (or left out).
fn is_delimiter(inside: &str) -> bool {
    let rest = inside.strip_prefix("end of ").unwrap_or(inside);
    let Some(rest) = rest.strip_prefix("passage ") else {
        return false;
    };
    let (number, nonce) = rest.split_once(' ').unwrap_or((rest, ""));
    !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && nonce.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `inside` (what follows `<<<`, no `>>>` yet) could still become a delimiter: the start of
/// one, as an answer cut off by its token limit leaves it.
fn is_delimiter_start(inside: &str) -> bool {
    let rest = match inside.strip_prefix("end of ") {
        Some(rest) => rest,
        None if "end of ".starts_with(inside) => return true,
        None => inside,
    };
    let rest = match rest.strip_prefix("passage ") {
        Some(rest) => rest,
        None => return "passage ".starts_with(rest),
    };
    let (number, nonce) = rest.split_once(' ').unwrap_or((rest, ""));
    number.bytes().all(|b| b.is_ascii_digit())
        && (!number.is_empty() || !rest.contains(' '))
        && nonce.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A filter over an answer's pieces, in order.
#[derive(Debug, Default)]
pub struct Scrub {
    held: String,
    /// A delimiter was just dropped: a line break right after it goes too, even in the next piece.
    after_delimiter: bool,
}

impl Scrub {
    /// What can be shown of the answer now that `piece` has arrived.
    pub fn feed(&mut self, piece: &str) -> String {
        self.held.push_str(piece);
        let mut shown = String::new();
        loop {
            if self.after_delimiter {
                if self.held.is_empty() {
                    return shown;
                }
                if self.held.starts_with('\n') {
                    self.held.drain(..1);
                }
                self.after_delimiter = false;
            }
            let Some(open) = self.held.find("<<<") else {
                // A trailing `<` or `<<` may still become an opening.
                let keep = self.held.len() - self.held.trim_end_matches('<').len();
                let cut = self.held.len() - keep.min(2);
                shown.push_str(&self.held[..cut]);
                self.held.drain(..cut);
                return shown;
            };
            shown.push_str(&self.held[..open]);
            self.held.drain(..open);
            match self.held[3..].find(">>>") {
                Some(close) if close <= LONGEST => {
                    let end = 3 + close + 3;
                    if is_delimiter(&self.held[3..3 + close]) {
                        self.held.drain(..end);
                        self.after_delimiter = true;
                    } else {
                        shown.push_str(&self.held[..end]);
                        self.held.drain(..end);
                    }
                }
                None if self.held.len() < 3 + LONGEST + 3 => return shown,
                // Too long to be a delimiter: the opening is text.
                _ => {
                    shown.push_str("<<<");
                    self.held.drain(..3);
                }
            }
        }
    }

    /// The rest, once the answer has ended: whatever was held, as written, unless it is the start of
    /// a delimiter that the answer's end cut off.
    pub fn finish(&mut self) -> String {
        let held = std::mem::take(&mut self.held);
        match held.strip_prefix("<<<") {
            Some(inside) if is_delimiter_start(inside) => String::new(),
            _ => held,
        }
    }
}

/// `answer` without the prompt's delimiters, in one go.
pub fn scrub(answer: &str) -> String {
    let mut scrub = Scrub::default();
    let mut out = scrub.feed(answer);
    out.push_str(&scrub.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer fed in pieces cut at every byte boundary pair gives what it gives whole.
    fn in_pieces(answer: &str) -> String {
        let whole = scrub(answer);
        let cuts: Vec<usize> = (0..=answer.len())
            .filter(|i| answer.is_char_boundary(*i))
            .collect();
        for &a in &cuts {
            for &b in cuts.iter().filter(|b| **b >= a) {
                let mut scrub = Scrub::default();
                let mut out = String::new();
                for piece in [&answer[..a], &answer[a..b], &answer[b..]] {
                    out.push_str(&scrub.feed(piece));
                }
                out.push_str(&scrub.finish());
                assert_eq!(out, whole, "cut at {a} and {b}");
            }
        }
        whole
    }

    #[test]
    fn copied_delimiters_are_dropped_in_whatever_pieces_they_arrive() {
        assert_eq!(
            in_pieces("Yes, it is [1].\n<<<end of passage 3 k2fX9q>>>\nDone."),
            "Yes, it is [1].\nDone."
        );
        assert_eq!(
            in_pieces("<<<passage 1 abc>>>Title: Refunds"),
            "Title: Refunds"
        );
        assert_eq!(in_pieces("See <<<end of passage 12>>>."), "See .");
        // An answer that its token limit cut off inside a delimiter.
        for cut in [
            "<<<",
            "<<<end of pa",
            "<<<passage",
            "<<<end of passage 3 10b97d87a061",
        ] {
            assert_eq!(
                in_pieces(&format!("The answer is:\n{cut}")),
                "The answer is:\n"
            );
        }
    }

    #[test]
    fn other_angle_brackets_are_text() {
        for text in [
            "a <<<b>>> c",
            "x << y and z <<< w",
            "<<<passage one abc>>>",
            "<<<passage 1 a-b>>>",
            "ends with <<",
            "ends with <<<other",
            "ends with <<<passage x",
            "façade <<< ünïcode >>> done",
        ] {
            assert_eq!(in_pieces(text), text);
        }
        // An opening with no close within a delimiter's length is shown once that is clear.
        let long = format!("<<<{}", "x".repeat(100));
        let mut scrub = Scrub::default();
        assert_eq!(scrub.feed(&long), long);
    }
}

//! Keys and mouse events, turned into [`Action`]s. Vim keys and arrows
//! both work; while a filter is being typed, printable keys are text.

use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};

use ratatui::layout::Rect;

use crate::app::{Action, View};
use crate::ui;

/// A left click on the timeline's heat map (on a screen of `screen`).
pub fn timeline_click(event: &Event, screen: Rect) -> Option<Action> {
    match event {
        Event::Mouse(m) if m.kind == MouseEventKind::Down(MouseButton::Left) => {
            ui::timeline_bucket_at(screen, m.column, m.row).map(Action::ClickBucket)
        }
        _ => None,
    }
}

/// The action an event asks for, if any. `searching`: a filter is being
/// typed. `list_top`: the screen row of a list's first row, for clicks.
pub fn action(event: &Event, searching: bool, list_top: u16) -> Option<Action> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => key_action(key, searching),
        Event::Mouse(m) => match m.kind {
            MouseEventKind::ScrollDown => Some(Action::Down),
            MouseEventKind::ScrollUp => Some(Action::Up),
            MouseEventKind::Down(MouseButton::Left) if m.row >= list_top => {
                Some(Action::ClickRow(usize::from(m.row - list_top)))
            }
            _ => None,
        },
        _ => None,
    }
}

fn key_action(key: &KeyEvent, searching: bool) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if searching {
        return match key.code {
            KeyCode::Char(c) => Some(Action::Type(c)),
            KeyCode::Backspace => Some(Action::Backspace),
            KeyCode::Enter => Some(Action::SearchDone),
            KeyCode::Esc => Some(Action::Cancel),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Tab => Action::NextView,
        KeyCode::BackTab => Action::PrevView,
        KeyCode::Char(c @ '1'..='6') => Action::Goto(View::ALL[c as usize - '1' as usize]),
        KeyCode::Char('j') | KeyCode::Down => Action::Down,
        KeyCode::Char('k') | KeyCode::Up => Action::Up,
        KeyCode::Char('h') | KeyCode::Left => Action::Left,
        KeyCode::Char('l') | KeyCode::Right => Action::Right,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::Char('d') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::PageDown,
        KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::PageUp,
        KeyCode::Char('g') | KeyCode::Home => Action::Top,
        KeyCode::Char('G') | KeyCode::End => Action::Bottom,
        KeyCode::Char('+') | KeyCode::Char('=') | KeyCode::Char('z') => Action::ZoomIn,
        KeyCode::Char('-') | KeyCode::Char('Z') => Action::ZoomOut,
        KeyCode::Enter => Action::Enter,
        KeyCode::Char('s') => Action::ToggleSort,
        KeyCode::Char('m') => Action::ToggleAxis,
        KeyCode::Char('v') => Action::NextVcpu,
        KeyCode::Char('f') => Action::ToggleFull,
        KeyCode::Char('/') => Action::Search,
        KeyCode::Esc => Action::Cancel,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn vim_keys_and_arrows_agree() {
        assert_eq!(
            action(&key(KeyCode::Char('j')), false, 0),
            Some(Action::Down)
        );
        assert_eq!(action(&key(KeyCode::Down), false, 0), Some(Action::Down));
        assert_eq!(
            action(&key(KeyCode::Char('3')), false, 0),
            Some(Action::Goto(View::Timeline))
        );
    }

    #[test]
    fn typing_a_filter_takes_letters_as_text() {
        assert_eq!(
            action(&key(KeyCode::Char('q')), true, 0),
            Some(Action::Type('q'))
        );
        assert_eq!(
            action(&key(KeyCode::Char('q')), false, 0),
            Some(Action::Quit)
        );
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(action(&ctrl_c, true, 0), Some(Action::Quit));
    }
}

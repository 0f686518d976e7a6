//! The interface's state, and how actions change it. Nothing here draws
//! or reads the terminal, and nothing reads a trace: [`App::handle`]
//! returns the loads an action needs, the loader runs them on its own
//! thread, and [`App::loaded`] takes their results.

use std::ops::Range;
use std::sync::Arc;

use crate::data::{Accesses, Call, HotBlock, HotPage, Summary, Timeline, BUCKETS};
use crate::diff::Comparison;

/// The views, in tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Overview,
    Hot,
    Timeline,
    Syscalls,
    Memory,
    Diff,
}

impl View {
    pub const ALL: [View; 6] = [
        View::Overview,
        View::Hot,
        View::Timeline,
        View::Syscalls,
        View::Memory,
        View::Diff,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Hot => "Hot blocks",
            View::Timeline => "Timeline",
            View::Syscalls => "Syscalls",
            View::Memory => "Memory",
            View::Diff => "Diff",
        }
    }

    fn index(self) -> usize {
        View::ALL.iter().position(|&v| v == self).unwrap_or(0)
    }
}

/// What the user asked for, whatever key or click said it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    NextView,
    PrevView,
    Goto(View),
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Left,
    Right,
    ZoomIn,
    ZoomOut,
    /// The timeline's vertical axis: address bands or modules.
    ToggleAxis,
    /// The next vCPU (timeline, first divergence).
    NextVcpu,
    /// The Diff view's first divergence at full height, or with the counts.
    ToggleFull,
    Enter,
    ToggleSort,
    Help,
    /// `/`: start typing a filter for the current view.
    Search,
    /// A character typed into the filter.
    Type(char),
    Backspace,
    /// Enter while typing: keep the filter.
    SearchDone,
    /// Esc: drop the filter (or close help).
    Cancel,
    /// A click on a row of the current list (0 = first row shown).
    ClickRow(usize),
    /// A click on the timeline's heat map: the cursor to that bucket, and
    /// the blocks there.
    ClickBucket(usize),
}

/// A load for the background thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Summary,
    Syscalls,
    Timeline {
        vcpu: u32,
        seqs: Option<Range<u64>>,
    },
    WindowBlocks {
        vcpu: u32,
        seqs: Range<u64>,
    },
    HotPages,
    PageAccesses {
        page: u64,
    },
    /// The accesses that touch `addrs` (one address, its size).
    AddrAccesses {
        addrs: Range<u64>,
    },
    Diff,
}

/// What the background thread sends back; errors as text for the status
/// line.
pub enum Loaded {
    Summary(Result<Arc<Summary>, String>),
    Syscalls(Result<Vec<Call>, String>),
    Timeline(Result<Timeline, String>),
    WindowBlocks(Result<Vec<HotBlock>, String>),
    HotPages(Result<Vec<HotPage>, String>),
    PageAccesses(Result<Accesses, String>),
    AddrAccesses(Range<u64>, Result<Accesses, String>),
    Diff(Result<Comparison, String>),
}

/// A list's cursor and what it filters on.
#[derive(Clone, Debug, Default)]
pub struct ListState {
    pub selected: usize,
    pub filter: String,
}

impl ListState {
    fn move_by(&mut self, delta: isize, len: usize) {
        if len == 0 {
            self.selected = 0;
            return;
        }
        let next = self.selected as isize + delta;
        self.selected = next.clamp(0, len as isize - 1) as usize;
    }
}

/// Which of the Memory view's lists keys move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemFocus {
    /// The hot pages.
    Pages,
    /// The selected page's accesses.
    Page,
    /// The accesses to one address, with its values over time.
    Address,
}

/// Hot blocks ranked by executions or by instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Execs,
    Insns,
}

/// Something not yet loaded, loading, or there.
pub enum Slot<T> {
    Idle,
    Loading,
    Ready(T),
    Failed(String),
}

impl<T> Slot<T> {
    pub fn ready(&self) -> Option<&T> {
        match self {
            Slot::Ready(t) => Some(t),
            _ => None,
        }
    }

    fn from(result: Result<T, String>) -> Slot<T> {
        match result {
            Ok(t) => Slot::Ready(t),
            Err(e) => Slot::Failed(e),
        }
    }
}

pub struct App {
    pub view: View,
    pub trace_name: String,
    /// The second trace's name, when comparing two.
    pub other_name: Option<String>,
    pub summary: Slot<Arc<Summary>>,
    pub hot: ListState,
    pub sort: SortBy,
    pub syscalls: Slot<Vec<Call>>,
    pub calls: ListState,
    pub timeline: Slot<Timeline>,
    /// The timeline's vCPU, its cursor (a bucket), and the ranges zoomed
    /// out of.
    pub tl_vcpu: u32,
    pub tl_cursor: usize,
    pub tl_zoom: Vec<Range<u64>>,
    /// The timeline's rows are modules (else address bands).
    pub tl_by_module: bool,
    pub window: Slot<Vec<HotBlock>>,
    pub pages: Slot<Vec<HotPage>>,
    pub page_list: ListState,
    /// The selected page's accesses, and the cursor in them.
    pub accesses: Slot<Accesses>,
    pub access_list: ListState,
    /// The address followed, its accesses, and the cursor in them.
    pub followed: Option<u64>,
    pub addr_accesses: Slot<Accesses>,
    pub addr_list: ListState,
    pub mem_focus: MemFocus,
    pub diff: Slot<Comparison>,
    pub diff_list: ListState,
    /// Which vCPU's first divergence is shown.
    pub diff_vcpu: usize,
    /// The first divergence fills the view.
    pub diff_full: bool,
    /// Typing a filter.
    pub searching: bool,
    pub help: bool,
    pub status: String,
    pub quit: bool,
}

impl App {
    /// A new interface on one trace (or two), and the loads to start with.
    pub fn new(trace_name: String, other_name: Option<String>) -> (App, Vec<Request>) {
        let app = App {
            view: View::Overview,
            trace_name,
            other_name,
            summary: Slot::Loading,
            hot: ListState::default(),
            sort: SortBy::Execs,
            syscalls: Slot::Idle,
            calls: ListState::default(),
            timeline: Slot::Idle,
            tl_vcpu: 0,
            tl_cursor: 0,
            tl_zoom: Vec::new(),
            tl_by_module: false,
            window: Slot::Idle,
            pages: Slot::Idle,
            page_list: ListState::default(),
            accesses: Slot::Idle,
            access_list: ListState::default(),
            followed: None,
            addr_accesses: Slot::Idle,
            addr_list: ListState::default(),
            mem_focus: MemFocus::Pages,
            diff: Slot::Idle,
            diff_list: ListState::default(),
            diff_vcpu: 0,
            diff_full: false,
            searching: false,
            help: false,
            status: String::new(),
            quit: false,
        };
        (app, vec![Request::Summary])
    }

    /// The hot blocks the Hot view lists: filtered, in the chosen order.
    pub fn hot_rows(&self) -> Vec<&HotBlock> {
        let Some(s) = self.summary.ready() else {
            return Vec::new();
        };
        let needle = self.hot.filter.to_lowercase();
        let mut rows: Vec<&HotBlock> = s
            .hot
            .iter()
            .filter(|h| {
                needle.is_empty()
                    || h.symbol.to_lowercase().contains(&needle)
                    || h.module.to_lowercase().contains(&needle)
                    || format!("{:#x}", h.pc).contains(&needle)
            })
            .collect();
        if self.sort == SortBy::Insns {
            rows.sort_by(|a, b| b.insns().cmp(&a.insns()).then(a.pc.cmp(&b.pc)));
        }
        rows
    }

    /// The calls the Syscalls view lists: filtered by name.
    pub fn call_rows(&self) -> Vec<&Call> {
        let Some(calls) = self.syscalls.ready() else {
            return Vec::new();
        };
        let needle = self.calls.filter.to_lowercase();
        calls
            .iter()
            .filter(|c| needle.is_empty() || c.name.to_lowercase().contains(&needle))
            .collect()
    }

    /// The `seq` range of the timeline's cursor bucket.
    pub fn cursor_seqs(&self) -> Option<Range<u64>> {
        let t = self.timeline.ready()?;
        Some(bucket_range(&t.seqs, self.tl_cursor))
    }

    fn list_len(&self) -> usize {
        match self.view {
            View::Hot => self.hot_rows().len(),
            View::Syscalls => self.call_rows().len(),
            View::Memory => match self.mem_focus {
                MemFocus::Pages => self.pages.ready().map_or(0, Vec::len),
                MemFocus::Page => self.accesses.ready().map_or(0, |a| a.rows.len()),
                MemFocus::Address => self.addr_accesses.ready().map_or(0, |a| a.rows.len()),
            },
            View::Diff => self.diff.ready().map_or(0, |d| d.rows.len()),
            _ => 0,
        }
    }

    fn list(&mut self) -> Option<&mut ListState> {
        match self.view {
            View::Hot => Some(&mut self.hot),
            View::Syscalls => Some(&mut self.calls),
            View::Memory => Some(match self.mem_focus {
                MemFocus::Pages => &mut self.page_list,
                MemFocus::Page => &mut self.access_list,
                MemFocus::Address => &mut self.addr_list,
            }),
            View::Diff => Some(&mut self.diff_list),
            _ => None,
        }
    }

    /// Applies an action; returns the loads it needs.
    pub fn handle(&mut self, action: Action) -> Vec<Request> {
        if self.help {
            if matches!(action, Action::Help | Action::Cancel | Action::Quit) {
                self.help = false;
            }
            return Vec::new();
        }
        if self.searching {
            return self.handle_search(action);
        }
        let len = self.list_len();
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.help = true,
            Action::NextView => {
                return self.goto(View::ALL[(self.view.index() + 1) % View::ALL.len()])
            }
            Action::PrevView => {
                return self
                    .goto(View::ALL[(self.view.index() + View::ALL.len() - 1) % View::ALL.len()])
            }
            Action::Goto(v) => return self.goto(v),
            Action::Up => self.step(-1, len),
            Action::Down => self.step(1, len),
            Action::PageUp => self.step(-20, len),
            Action::PageDown => self.step(20, len),
            Action::Top => self.step(-(len as isize) - BUCKETS as isize, len),
            Action::Bottom => self.step(len as isize + BUCKETS as isize, len),
            Action::Left if self.view == View::Timeline => {
                self.tl_cursor = self.tl_cursor.saturating_sub(1)
            }
            Action::Right if self.view == View::Timeline => {
                self.tl_cursor = (self.tl_cursor + 1).min(BUCKETS - 1)
            }
            Action::ZoomIn if self.view == View::Timeline => return self.zoom_in(),
            Action::ZoomOut if self.view == View::Timeline => return self.zoom_out(),
            Action::ToggleAxis if self.view == View::Timeline => {
                self.tl_by_module = !self.tl_by_module
            }
            Action::NextVcpu if self.view == View::Timeline => return self.next_vcpu(),
            Action::NextVcpu if self.view == View::Diff => {
                let n = self.diff.ready().map_or(0, |d| d.divergences.len());
                self.diff_vcpu = (self.diff_vcpu + 1) % n.max(1);
            }
            Action::ToggleFull if self.view == View::Diff => self.diff_full = !self.diff_full,
            Action::Enter => return self.enter(),
            Action::ToggleSort if self.view == View::Hot => {
                self.sort = match self.sort {
                    SortBy::Execs => SortBy::Insns,
                    SortBy::Insns => SortBy::Execs,
                };
                self.hot.selected = 0;
            }
            Action::Search if self.view == View::Memory => {
                // `/` in Memory: type an address to follow.
                self.mem_focus = MemFocus::Pages;
                self.page_list.filter.clear();
                self.searching = true;
            }
            Action::Search if self.list().is_some() => self.searching = true,
            Action::Cancel if self.view == View::Memory => {
                self.mem_focus = match self.mem_focus {
                    MemFocus::Address if matches!(self.accesses, Slot::Idle) => MemFocus::Pages,
                    MemFocus::Address => MemFocus::Page,
                    _ => MemFocus::Pages,
                };
            }
            Action::Cancel => {
                if let Some(l) = self.list() {
                    l.filter.clear();
                    l.selected = 0;
                }
            }
            Action::ClickBucket(b) if self.view == View::Timeline => {
                self.tl_cursor = b.min(BUCKETS - 1);
                return self.enter();
            }
            Action::ClickRow(row) => {
                if let Some(l) = self.list() {
                    l.selected = row.min(len.saturating_sub(1));
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn step(&mut self, delta: isize, len: usize) {
        if self.view == View::Timeline {
            let c = self.tl_cursor as isize + delta.signum() * delta.abs().min(BUCKETS as isize);
            self.tl_cursor = c.clamp(0, BUCKETS as isize - 1) as usize;
        } else if let Some(l) = self.list() {
            l.move_by(delta, len);
        }
    }

    fn handle_search(&mut self, action: Action) -> Vec<Request> {
        if self.view == View::Memory && action == Action::SearchDone {
            self.searching = false;
            let typed = std::mem::take(&mut self.page_list.filter);
            let hex = typed.trim().trim_start_matches("0x");
            return match u64::from_str_radix(hex, 16) {
                Ok(addr) => self.follow(addr, 1),
                Err(_) => {
                    self.status = format!("not an address: {typed}");
                    Vec::new()
                }
            };
        }
        let Some(l) = self.list() else {
            self.searching = false;
            return Vec::new();
        };
        match action {
            Action::Type(c) => l.filter.push(c),
            Action::Backspace => {
                l.filter.pop();
            }
            Action::SearchDone => self.searching = false,
            Action::Cancel => {
                l.filter.clear();
                self.searching = false;
            }
            _ => {}
        }
        if let Some(l) = self.list() {
            l.selected = 0;
        }
        Vec::new()
    }

    /// Switches view, loading what it shows the first time.
    fn goto(&mut self, view: View) -> Vec<Request> {
        self.view = view;
        let mut loads = Vec::new();
        match view {
            View::Syscalls if matches!(self.syscalls, Slot::Idle) => {
                self.syscalls = Slot::Loading;
                loads.push(Request::Syscalls);
            }
            View::Timeline | View::Overview
                if matches!(self.timeline, Slot::Idle) && self.summary.ready().is_some() =>
            {
                self.timeline = Slot::Loading;
                loads.push(Request::Timeline {
                    vcpu: self.tl_vcpu,
                    seqs: None,
                });
            }
            View::Memory if matches!(self.pages, Slot::Idle) => {
                self.pages = Slot::Loading;
                loads.push(Request::HotPages);
            }
            View::Diff if matches!(self.diff, Slot::Idle) && self.other_name.is_some() => {
                self.diff = Slot::Loading;
                loads.push(Request::Diff);
            }
            _ => {}
        }
        loads
    }

    fn zoom_in(&mut self) -> Vec<Request> {
        let Some(t) = self.timeline.ready() else {
            return Vec::new();
        };
        let span = t.seqs.end - t.seqs.start;
        if span <= BUCKETS as u64 {
            self.status = "zoomed in as far as one block per column".into();
            return Vec::new();
        }
        // A quarter of the range, centred on the cursor.
        let centre = bucket_range(&t.seqs, self.tl_cursor).start;
        let half = span / 8;
        let start = centre.saturating_sub(half).max(t.seqs.start);
        let end = (start + span / 4).min(t.seqs.end);
        let new = start..end;
        let vcpu = t.vcpu;
        self.tl_zoom.push(t.seqs.clone());
        self.tl_cursor = BUCKETS / 2;
        self.timeline = Slot::Loading;
        vec![Request::Timeline {
            vcpu,
            seqs: Some(new),
        }]
    }

    /// The timeline of the next vCPU, whole.
    fn next_vcpu(&mut self) -> Vec<Request> {
        let ids: Vec<u32> = self.summary.ready().map_or(Vec::new(), |s| {
            s.manifest.vcpus.iter().map(|v| v.vcpu).collect()
        });
        if ids.len() < 2 {
            self.status = "this trace has one vCPU".into();
            return Vec::new();
        }
        let at = ids.iter().position(|&v| v == self.tl_vcpu).unwrap_or(0);
        let vcpu = ids[(at + 1) % ids.len()];
        self.tl_vcpu = vcpu;
        self.tl_zoom.clear();
        self.tl_cursor = 0;
        self.timeline = Slot::Loading;
        self.status = format!("vCPU {vcpu}");
        vec![Request::Timeline { vcpu, seqs: None }]
    }

    fn zoom_out(&mut self) -> Vec<Request> {
        let Some(previous) = self.tl_zoom.pop() else {
            return Vec::new();
        };
        self.tl_cursor = BUCKETS / 2;
        self.timeline = Slot::Loading;
        vec![Request::Timeline {
            vcpu: self.tl_vcpu,
            seqs: Some(previous),
        }]
    }

    /// Enter: the timeline lists the blocks of the cursor's column; a
    /// system call jumps to its moment on the timeline; a hot page lists
    /// its accesses.
    fn enter(&mut self) -> Vec<Request> {
        match self.view {
            View::Timeline => {
                let Some(seqs) = self.cursor_seqs() else {
                    return Vec::new();
                };
                self.window = Slot::Loading;
                vec![Request::WindowBlocks {
                    vcpu: self.tl_vcpu,
                    seqs,
                }]
            }
            View::Syscalls => {
                let Some(call) = self
                    .call_rows()
                    .get(self.calls.selected)
                    .map(|c| (*c).clone())
                else {
                    return Vec::new();
                };
                self.jump_to(call.vcpu, call.block_seq)
            }
            View::Memory => match self.mem_focus {
                MemFocus::Pages => {
                    let Some(page) = self
                        .pages
                        .ready()
                        .and_then(|p| p.get(self.page_list.selected))
                        .map(|p| p.page)
                    else {
                        return Vec::new();
                    };
                    self.accesses = Slot::Loading;
                    self.access_list = ListState::default();
                    self.mem_focus = MemFocus::Page;
                    vec![Request::PageAccesses { page }]
                }
                MemFocus::Page => {
                    let Some((addr, size)) = self
                        .accesses
                        .ready()
                        .and_then(|a| a.rows.get(self.access_list.selected))
                        .map(|a| (a.addr, a.size))
                    else {
                        return Vec::new();
                    };
                    self.follow(addr, size)
                }
                MemFocus::Address => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Lists every access to `size` bytes at `addr`, with its values.
    fn follow(&mut self, addr: u64, size: u8) -> Vec<Request> {
        self.followed = Some(addr);
        self.addr_accesses = Slot::Loading;
        self.addr_list = ListState::default();
        self.mem_focus = MemFocus::Address;
        vec![Request::AddrAccesses {
            addrs: addr..addr + u64::from(size.max(1)),
        }]
    }

    /// Shows the timeline around `seq` of `vcpu`.
    fn jump_to(&mut self, vcpu: u32, seq: u64) -> Vec<Request> {
        self.view = View::Timeline;
        self.tl_vcpu = vcpu;
        self.tl_zoom.clear();
        let width = 10_000u64.max(BUCKETS as u64);
        let start = seq.saturating_sub(width / 2);
        self.tl_cursor = ((seq - start) * BUCKETS as u64 / width) as usize;
        self.timeline = Slot::Loading;
        self.status = format!("block {seq} of vCPU {vcpu}");
        vec![Request::Timeline {
            vcpu,
            seqs: Some(start..start + width),
        }]
    }

    /// Takes a load's result.
    pub fn loaded(&mut self, loaded: Loaded) -> Vec<Request> {
        let mut more = Vec::new();
        match loaded {
            Loaded::Summary(r) => {
                if let Err(e) = &r {
                    self.status = e.clone();
                }
                self.summary = Slot::from(r);
                if self.summary.ready().is_some() && matches!(self.timeline, Slot::Idle) {
                    self.timeline = Slot::Loading;
                    more.push(Request::Timeline {
                        vcpu: self.tl_vcpu,
                        seqs: None,
                    });
                }
            }
            Loaded::Syscalls(r) => self.syscalls = Slot::from(r),
            Loaded::Timeline(r) => {
                if let Ok(t) = &r {
                    // A jump may land past the end of a short stream.
                    self.tl_cursor = self.tl_cursor.min(BUCKETS - 1);
                    self.tl_vcpu = t.vcpu;
                }
                self.timeline = Slot::from(r)
            }
            Loaded::WindowBlocks(r) => self.window = Slot::from(r),
            Loaded::HotPages(r) => self.pages = Slot::from(r),
            Loaded::PageAccesses(r) => self.accesses = Slot::from(r),
            // Only the address followed now: an earlier one's is stale.
            Loaded::AddrAccesses(addrs, r) => {
                if Some(addrs.start) == self.followed {
                    self.addr_accesses = Slot::from(r)
                }
            }
            Loaded::Diff(r) => self.diff = Slot::from(r),
        }
        more
    }
}

/// The `seq` range of bucket `i` of `seqs` cut into [`BUCKETS`].
pub fn bucket_range(seqs: &Range<u64>, i: usize) -> Range<u64> {
    let span = (seqs.end - seqs.start) as u128;
    let at = |k: usize| seqs.start + (span * k as u128 / BUCKETS as u128) as u64;
    at(i)..at(i + 1).max(at(i) + 1).min(seqs.end.max(at(i) + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_range() {
        let seqs = 100..1300;
        let mut next = 100;
        for i in 0..BUCKETS {
            let r = bucket_range(&seqs, i);
            assert_eq!(r.start, next);
            next = r.end;
        }
        assert_eq!(next, 1300);
    }

    #[test]
    fn tabs_cycle_and_load_their_data_once() {
        let (mut app, first) = App::new("t".into(), None);
        assert_eq!(first, vec![Request::Summary]);
        assert_eq!(
            app.handle(Action::Goto(View::Syscalls)),
            vec![Request::Syscalls]
        );
        assert!(app.handle(Action::Goto(View::Syscalls)).is_empty());
        app.handle(Action::NextView);
        assert_eq!(app.view, View::Memory);
        app.handle(Action::NextView);
        app.handle(Action::NextView);
        assert_eq!(app.view, View::Overview);
        app.handle(Action::PrevView);
        assert_eq!(app.view, View::Diff);
        app.handle(Action::Quit);
        assert!(app.quit);
    }

    #[test]
    fn help_swallows_keys_until_closed() {
        let (mut app, _) = App::new("t".into(), None);
        app.handle(Action::Help);
        app.handle(Action::Quit);
        assert!(!app.quit && !app.help);
        app.handle(Action::Quit);
        assert!(app.quit);
    }
}

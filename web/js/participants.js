// The participants side panel: everyone in the meeting with their role and microphone/camera
// state; for hosts and co-hosts also the waiting room (Admit / Deny), per-person controls
// (mute, ask to unmute, remove, roles) and the meeting-wide ones (mute all, lock, end).

import { h, initial } from './dom.js';
import { icon } from './icons.js';
import { t } from './i18n.js';
import { moderates, roleLabel } from './protocol.js';

/**
 * @typedef {import('./protocol.js').ParticipantInfo} ParticipantInfo
 * @typedef {import('./protocol.js').ParticipantId} ParticipantId
 * @typedef {import('./protocol.js').TrackKind} TrackKind
 * @typedef {import('./protocol.js').Role} Role
 * @typedef {import('./protocol.js').MeetingState} MeetingState
 * @typedef {import('./protocol.js').WaitingInfo} WaitingInfo
 */

/**
 * What the panel shows.
 * @typedef {object} PanelState
 * @property {ParticipantInfo} self our own entry (id may be -1 before joining)
 * @property {Role} role our role
 * @property {MeetingState} meeting
 * @property {ParticipantInfo[]} others
 * @property {WaitingInfo[]} waiting
 */

/**
 * What the panel's buttons do; the meeting screen asks for confirmation where needed.
 * @typedef {object} PanelActions
 * @property {(id: ParticipantId) => void} admit
 * @property {(id: ParticipantId) => void} deny
 * @property {(id: ParticipantId, kind: TrackKind) => void} mute
 * @property {(id: ParticipantId, kind: TrackKind) => void} askUnmute
 * @property {(p: ParticipantInfo) => void} remove
 * @property {(id: ParticipantId, role: 'co_host' | 'participant') => void} setRole
 * @property {(p: ParticipantInfo) => void} makeHost
 * @property {() => void} muteAll
 * @property {(locked: boolean) => void} setLocked
 * @property {(allow: boolean) => void} setAllowSelfUnmute
 * @property {() => void} endForAll
 */

const ROLE_ORDER = { host: 0, co_host: 1, participant: 2, guest: 2 };

export class ParticipantsPanel {
  /**
   * @param {PanelActions} actions
   * @param {() => void} close
   */
  constructor(actions, close) {
    this.actions = actions;
    this.title = h('h2', { id: 'participants-title', text: t('people.title') });
    this.muteAllButton = h('button', {
      type: 'button', class: 'button small', id: 'mute-all-btn', text: t('people.mute_all'), onclick: () => actions.muteAll(),
    });
    this.lockButton = h('button', {
      type: 'button', class: 'button small', id: 'lock-btn', 'aria-pressed': 'false', text: t('people.lock'),
      onclick: () => actions.setLocked(!this.state?.meeting.locked),
    });
    this.allowUnmute = h('input', { type: 'checkbox', id: 'allow-unmute-toggle' });
    this.allowUnmute.addEventListener('change', () => actions.setAllowSelfUnmute(this.allowUnmute.checked));
    this.endButton = h('button', {
      type: 'button', class: 'button small danger', id: 'end-all-btn', text: t('people.end_all'),
      onclick: () => actions.endForAll(),
    });
    this.hostTools = h('div', { class: 'host-tools', id: 'host-tools', hidden: true },
      h('div', { class: 'row' }, this.muteAllButton, this.lockButton, this.endButton),
      h('label', { class: 'check' }, this.allowUnmute, h('span', { text: t('people.allow_unmute') })));
    this.waitingTitle = h('h3', { id: 'waiting-room-title', text: t('people.waiting_room', { count: 0 }) });
    this.waitingList = h('ul', { class: 'people', id: 'waiting-list', 'aria-labelledby': 'waiting-room-title' });
    this.admitAllButton = h('button', {
      type: 'button', class: 'button small', id: 'admit-all-btn', text: t('people.admit_all'),
      onclick: () => { for (const w of this.state?.waiting ?? []) actions.admit(w.id); },
    });
    this.waitingSection = h('section', { class: 'waiting-section', id: 'waiting-section', hidden: true },
      h('div', { class: 'section-head' }, this.waitingTitle, this.admitAllButton),
      this.waitingList);
    this.listTitle = h('h3', { id: 'in-meeting-title', text: t('people.in_meeting', { count: 1 }) });
    this.list = h('ul', { class: 'people', id: 'participant-list', 'aria-labelledby': 'in-meeting-title' });
    this.el = h('aside', { class: 'side-panel participants-panel', id: 'participants-panel', hidden: true, 'aria-label': t('people.title') },
      h('header', {},
        this.title,
        h('button', { type: 'button', class: 'icon-button', title: t('people.close'), 'aria-label': t('people.close'), onclick: () => close() }, icon('close'))),
      h('div', { class: 'panel-body' },
        this.hostTools,
        this.waitingSection,
        h('section', {}, h('div', { class: 'section-head' }, this.listTitle), this.list)));
    /** @type {PanelState | null} */
    this.state = null;
    // A person's menu closes on Escape and on a click anywhere else.
    this.el.addEventListener('keydown', event => {
      const menu = event.target instanceof Element ? event.target.closest('details[open]') : null;
      if (event.key === 'Escape' && menu instanceof HTMLDetailsElement) {
        menu.open = false;
        menu.querySelector('summary')?.focus();
        event.stopPropagation();
      }
    });
    document.addEventListener('click', event => {
      for (const menu of this.list.querySelectorAll('details[open]')) {
        if (menu instanceof HTMLDetailsElement && !(event.target instanceof Node && menu.contains(event.target))) menu.open = false;
      }
    });
  }

  get open() {
    return !this.el.hidden;
  }

  /** @param {boolean} open */
  setOpen(open) {
    this.el.hidden = !open;
  }

  /**
   * Redraws the panel (keeping an open menu and the focused button).
   * @param {PanelState} state
   */
  render(state) {
    this.state = state;
    const mod = moderates(state.role);
    const total = state.others.length + 1;
    this.title.textContent = t('people.title_count', { count: total });
    this.listTitle.textContent = t('people.in_meeting', { count: total });

    this.hostTools.hidden = !mod;
    this.endButton.hidden = state.role !== 'host';
    this.lockButton.textContent = t(state.meeting.locked ? 'people.unlock' : 'people.lock');
    this.lockButton.setAttribute('aria-pressed', String(state.meeting.locked));
    this.allowUnmute.checked = state.meeting.allow_self_unmute;

    const focusKey = document.activeElement instanceof HTMLElement && this.el.contains(document.activeElement)
      ? document.activeElement.dataset.focusKey : undefined;
    const openMenu = this.list.querySelector('details[open]')?.getAttribute('data-menu-of');

    this.waitingSection.hidden = !mod || state.waiting.length === 0;
    this.waitingTitle.textContent = t('people.waiting_room', { count: state.waiting.length });
    this.admitAllButton.hidden = state.waiting.length < 2;
    this.waitingList.replaceChildren(...(mod ? state.waiting : []).map(w => this.waitingRow(w)));

    const others = [...state.others].sort((a, b) =>
      ROLE_ORDER[a.role] - ROLE_ORDER[b.role] || a.name.localeCompare(b.name));
    this.list.replaceChildren(this.row(state.self, state, true), ...others.map(p => this.row(p, state, false)));

    if (openMenu) this.list.querySelector(`details[data-menu-of="${openMenu}"]`)?.setAttribute('open', '');
    if (focusKey) {
      const el = this.el.querySelector(`[data-focus-key="${focusKey}"]`);
      if (el instanceof HTMLElement) el.focus();
    }
  }

  /** @param {WaitingInfo} w */
  waitingRow(w) {
    return h('li', { class: 'person', 'data-waiting-id': w.id },
      avatar(w.name),
      h('span', { class: 'person-name', text: w.name }),
      w.role === 'guest' ? h('span', { class: 'role-badge guest', text: t('role.guest') }) : null,
      h('span', { class: 'person-actions' },
        h('button', {
          type: 'button', class: 'button small primary', 'data-action': 'admit', 'data-focus-key': `admit-${w.id}`,
          'aria-label': t('people.admit_name', { name: w.name }), text: t('people.admit'), onclick: () => this.actions.admit(w.id),
        }),
        h('button', {
          type: 'button', class: 'button small', 'data-action': 'deny', 'data-focus-key': `deny-${w.id}`,
          'aria-label': t('people.deny_name', { name: w.name }), text: t('people.deny'), onclick: () => this.actions.deny(w.id),
        })));
  }

  /**
   * @param {ParticipantInfo} p
   * @param {PanelState} state
   * @param {boolean} self
   */
  row(p, state, self) {
    const label = roleLabel(p.role);
    const li = h('li', {
      class: 'person', 'data-member-id': p.id, 'data-role': p.role,
      'data-audio': p.audio ? 'on' : 'off', 'data-video': p.video ? 'on' : 'off',
    },
    avatar(p.name),
    h('span', { class: 'person-name', text: self ? t('common.you', { name: p.name }) : p.name }),
    label ? h('span', { class: `role-badge ${p.role}`, text: label }) : null,
    p.hand_raised ? h('span', { class: 'state hand', title: t('people.hand_raised'), 'aria-label': t('people.hand_raised'), role: 'img' }, icon('hand')) : null,
    h('span', {
      class: `state mic${p.audio ? '' : ' off'}`, role: 'img',
      'aria-label': t(p.audio ? 'people.mic_on' : 'people.mic_off'), title: t(p.audio ? 'people.mic_on' : 'people.mic_off'),
    }, icon(p.audio ? 'mic' : 'micOff')),
    h('span', {
      class: `state cam${p.video ? '' : ' off'}`, role: 'img',
      'aria-label': t(p.video ? 'people.cam_on' : 'people.cam_off'), title: t(p.video ? 'people.cam_on' : 'people.cam_off'),
    }, icon(p.video ? 'cam' : 'camOff')));
    if (!self && moderates(state.role) && (state.role === 'host' || p.role !== 'host')) li.append(this.actionsFor(p, state));
    return li;
  }

  /**
   * A moderator's controls for someone else.
   * @param {ParticipantInfo} p
   * @param {PanelState} state
   */
  actionsFor(p, state) {
    const a = this.actions;
    /**
     * @param {string} action
     * @param {string} text
     * @param {string} aria
     * @param {() => void} run
     * @param {string} [cls]
     */
    const button = (action, text, aria, run, cls = 'button small') => h('button', {
      type: 'button', class: cls, 'data-action': action, 'data-focus-key': `${action}-${p.id}`,
      role: cls.includes('menu-item') ? 'menuitem' : null, 'aria-label': aria, text, onclick: run,
    });
    const name = { name: p.name };
    const quick = p.audio
      ? button('mute-audio', t('people.mute'), t('people.mute_name', name), () => a.mute(p.id, 'audio'))
      : button('ask-unmute', t('people.ask_unmute'), t('people.ask_unmute_name', name), () => a.askUnmute(p.id, 'audio'));
    const items = [
      p.video
        ? button('stop-video', t('people.stop_video'), t('people.stop_video_name', name), () => a.mute(p.id, 'video'), 'menu-item')
        : button('ask-video', t('people.ask_video'), t('people.ask_video_name', name), () => a.askUnmute(p.id, 'video'), 'menu-item'),
      p.screen ? button('stop-screen', t('people.stop_screen'), t('people.stop_screen_name', name), () => a.mute(p.id, 'screen'), 'menu-item') : null,
    ];
    if (state.role === 'host') {
      items.push(p.role === 'co_host'
        ? button('remove-cohost', t('people.remove_cohost'), t('people.remove_cohost_name', name), () => a.setRole(p.id, 'participant'), 'menu-item')
        : button('make-cohost', t('people.make_cohost'), t('people.make_cohost_name', name), () => a.setRole(p.id, 'co_host'), 'menu-item'));
      items.push(button('make-host', t('people.make_host'), t('people.make_host_name', name), () => a.makeHost(p), 'menu-item'));
    }
    if (p.role !== 'host') {
      items.push(button('remove', t('people.remove'), t('people.remove_name', name), () => a.remove(p), 'menu-item danger'));
    }
    const menu = h('details', { class: 'row-menu', 'data-menu-of': p.id },
      h('summary', { class: 'icon-button', 'aria-label': t('people.more_name', name), title: t('people.more'), 'data-action': 'more',

        'data-focus-key': `more-${p.id}` }, icon('more')),
      h('div', { class: 'menu', role: 'menu' }, ...items));
    // Choosing an item closes the menu.
    menu.addEventListener('click', event => {
      if (event.target instanceof HTMLElement && event.target.closest('.menu-item')) menu.open = false;
    });
    return h('span', { class: 'person-actions' }, quick, menu);
  }
}

/** @param {string} name */
function avatar(name) {
  return h('span', { class: 'person-avatar', 'aria-hidden': 'true', text: initial(name) });
}

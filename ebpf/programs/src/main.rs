//! The XDP program: a shell around `vpcgw_common::pipeline::process`, which
//! holds the logic (shared with host tests and `vpcgw explain`). This file only
//! declares the maps, binds the pipeline's map trait to them, and carries out
//! the action (pass, drop, or metadata + redirect to an AF_XDP socket).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![allow(unsafe_code)]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::{xdp_action, xdp_md},
        helpers::{bpf_ktime_get_coarse_ns, bpf_xdp_adjust_meta, bpf_xdp_load_bytes},
        macros::{map, xdp},
        maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, XskMap, lpm_trie::Key},
        programs::XdpContext,
    };
    use aya_log_ebpf::debug;
    use vpcgw_common::{
        Addr,
        abi::*,
        maps::{DataplaneMaps, PolicyMaps},
        pipeline::{Action, Work, parse_frame, process_parsed},
        stats::{REASON_COUNT, Reason},
        wire::Packet,
    };

    #[map]
    static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
    #[map]
    static IFACES: HashMap<u32, Iface> = HashMap::with_max_entries(IFACE_ENTRIES, 0);
    #[map]
    static PORTS: HashMap<PortKey, PortVal> = HashMap::with_max_entries(PORT_ENTRIES, 0);
    #[map]
    static REMOTE_V4: LpmTrie<LpmV4, RemoteVal> =
        LpmTrie::with_max_entries(REMOTE_ENTRIES, BPF_F_NO_PREALLOC);
    #[map]
    static REMOTE_V6: LpmTrie<LpmV6, RemoteVal> =
        LpmTrie::with_max_entries(REMOTE_ENTRIES, BPF_F_NO_PREALLOC);
    #[map]
    static POLICY_HDR: HashMap<HdrKey, HdrVal> = HashMap::with_max_entries(POLICY_HDR_ENTRIES, 0);
    #[map]
    static POLICY: HashMap<PolicyKey, PolicyVal> = HashMap::with_max_entries(POLICY_ENTRIES, 0);
    #[map]
    static VPN_REMOTE_V4: LpmTrie<LpmV4, VpnVal> =
        LpmTrie::with_max_entries(VPN_ENTRIES, BPF_F_NO_PREALLOC);
    #[map]
    static VPN_REMOTE_V6: LpmTrie<LpmV6, VpnVal> =
        LpmTrie::with_max_entries(VPN_ENTRIES, BPF_F_NO_PREALLOC);
    #[map]
    static VPN_LOCAL_V4: LpmTrie<VpnLocalV4, VpnVal> =
        LpmTrie::with_max_entries(VPN_ENTRIES, BPF_F_NO_PREALLOC);
    #[map]
    static VPN_LOCAL_V6: LpmTrie<VpnLocalV6, VpnVal> =
        LpmTrie::with_max_entries(VPN_ENTRIES, BPF_F_NO_PREALLOC);
    #[map]
    static PEERS: HashMap<PeerKey, PeerVal> = HashMap::with_max_entries(PEER_ENTRIES, 0);
    #[map]
    static CT: LruHashMap<CtKey, CtVal> = LruHashMap::with_max_entries(DEFAULT_CT_ENTRIES, 0);
    #[map]
    static FRAGS: LruHashMap<FragKey, FragVal> =
        LruHashMap::with_max_entries(DEFAULT_FRAG_ENTRIES, 0);
    #[map]
    static XSKS: XskMap = XskMap::with_max_entries(XSK_ENTRIES, 0);
    #[map]
    static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(REASON_COUNT, 0);
    #[map]
    static RULE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2 * MAX_RULES, 0);
    /// Per-packet working memory (see `pipeline::Work` for why it is not on
    /// the stack).
    #[map]
    static WORK: PerCpuArray<Work> = PerCpuArray::with_max_entries(1, 0);
    #[map]
    static CONN_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(2 * MAX_CONNS, 0);

    /// LPM tries must be created without preallocation.
    const BPF_F_NO_PREALLOC: u32 = 1;

    /// Bytes of the frame copied in one helper call; headers beyond them are
    /// read one by one. Enough for Ethernet, two VLAN tags, IPv6 with a few
    /// extension headers and TCP.
    const HEAD: usize = 128;

    /// The largest read `Packet::load` serves (an IPv6 header).
    const MAX_READ: usize = 64;

    /// The first `HEAD` bytes of the frame (per CPU), plus slack so that any
    /// offset below HEAD plus any read stays inside (see `Frame::load`).
    #[map]
    static HEAD_BUF: PerCpuArray<[u8; HEAD + MAX_READ]> = PerCpuArray::with_max_entries(1, 0);

    /// The frame, read through `bpf_xdp_load_bytes`: the kernel checks each
    /// read at run time, so offsets are plain numbers to the verifier. Direct
    /// packet pointers at header-chain-dependent offsets made the verifier
    /// walk every chain separately (past its 1M-instruction budget) and broke
    /// whenever LLVM rewrote a bounds check into a form it cannot follow.
    struct Frame {
        ctx: *mut xdp_md,
        len: usize,
    }

    impl Packet for Frame {
        #[inline(always)]
        fn len(&self) -> usize {
            self.len
        }

        #[inline(always)]
        fn load<const N: usize>(&self, off: usize, buf: &mut [u8; N]) -> bool {
            // SAFETY: the helper writes at most N bytes into `buf`.
            let rc = unsafe {
                bpf_xdp_load_bytes(
                    self.ctx,
                    off as u32,
                    buf.as_mut_ptr() as *mut core::ffi::c_void,
                    N as u32,
                )
            };
            rc == 0
        }
    }

    /// The frame's first `HEAD` bytes, copied into `HEAD_BUF` with one helper
    /// call: a call per header read was half the cost of an established
    /// packet. Reads past the copy fail; the caller then parses again from
    /// the `Frame` (rare: header chains longer than `HEAD`).
    struct Head {
        /// The whole frame's length (length fields are checked against it).
        len: usize,
        /// Bytes of the frame in `HEAD_BUF`.
        copied: usize,
    }

    impl Head {
        #[inline(always)]
        fn new(ctx: &XdpContext, len: usize) -> Head {
            let mut h = Head { len, copied: 0 };
            let Some(slot) = HEAD_BUF.get_ptr_mut(0) else {
                return h;
            };
            let n = if len < HEAD { len } else { HEAD };
            if n == 0 {
                return h;
            }
            // SAFETY: `slot` is this CPU's HEAD + MAX_READ bytes; 1 <= n <= HEAD.
            let rc =
                unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, slot as *mut core::ffi::c_void, n as u32) };
            if rc == 0 {
                h.copied = n;
            }
            h
        }
    }

    impl Packet for Head {
        #[inline(always)]
        fn len(&self) -> usize {
            self.len
        }

        #[inline(always)]
        fn load<const N: usize>(&self, off: usize, buf: &mut [u8; N]) -> bool {
            // Looked up here rather than kept in Head: a map pointer read
            // back from the caller's frame reaches the verifier as a plain
            // number. A per-CPU array lookup is inlined by the verifier.
            let Some(slot) = HEAD_BUF.get_ptr(0) else {
                return false;
            };
            if N > MAX_READ || off + N > self.copied {
                return false;
            }
            // The mask does not change `off` (< copied <= HEAD, a power of
            // two); it gives the verifier a bound on the register used for
            // the access. Without black_box LLVM would drop it as redundant.
            let at = core::hint::black_box(off) & (HEAD - 1);
            // SAFETY: at + N <= HEAD - 1 + MAX_READ, inside the slot; the
            // bytes are the frame's (off + N <= copied).
            unsafe {
                core::ptr::copy_nonoverlapping((slot as *const u8).add(at), buf.as_mut_ptr(), N)
            };
            true
        }
    }

    #[inline(always)]
    fn lpm_v4(slot: u8, addr: &Addr) -> Key<LpmV4> {
        let o = addr.v4_octets();
        Key::new(LPM_SLOT_BITS + 32, [slot, o[0], o[1], o[2], o[3]])
    }

    #[inline(always)]
    fn lpm_v6(slot: u8, addr: &Addr) -> Key<LpmV6> {
        let o = addr.octets();
        // Written out: a zeroed array filled in a loop becomes a memset call.
        let d = [
            slot, o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], o[8], o[9], o[10], o[11], o[12],
            o[13], o[14], o[15],
        ];
        Key::new(LPM_SLOT_BITS + 128, d)
    }

    struct Maps;

    impl PolicyMaps for Maps {
        #[inline(always)]
        fn port(&self, key: &PortKey) -> Option<&PortVal> {
            // SAFETY: map values stay valid for the program's run (RCU); a
            // concurrent update can only show us the old or the new value.
            unsafe { PORTS.get(key) }
        }

        #[inline(always)]
        fn remote_class(&self, slot: u8, family: u8, addr: &Addr) -> u32 {
            let v = if family == FAMILY_V4 {
                REMOTE_V4.get(lpm_v4(slot, addr))
            } else {
                REMOTE_V6.get(lpm_v6(slot, addr))
            };
            v.map_or(0, |v| v.class)
        }

        #[inline(always)]
        fn hdr(&self, key: &HdrKey) -> Option<&HdrVal> {
            // SAFETY: as for `port`.
            unsafe { POLICY_HDR.get(key) }
        }

        #[inline(always)]
        fn policy(&self, key: &PolicyKey) -> Option<&PolicyVal> {
            // SAFETY: as for `port`.
            unsafe { POLICY.get(key) }
        }

        #[inline(always)]
        fn vpn_remote(&self, slot: u8, family: u8, addr: &Addr) -> u32 {
            let v = if family == FAMILY_V4 {
                VPN_REMOTE_V4.get(lpm_v4(slot, addr))
            } else {
                VPN_REMOTE_V6.get(lpm_v6(slot, addr))
            };
            v.map_or(NONE, |v| v.conn)
        }

        #[inline(always)]
        fn vpn_local(&self, slot: u8, family: u8, conn: u32, addr: &Addr) -> bool {
            let c = conn.to_be_bytes();
            if family == FAMILY_V4 {
                let o = addr.v4_octets();
                let d = [slot, c[0], c[1], c[2], c[3], o[0], o[1], o[2], o[3]];
                VPN_LOCAL_V4
                    .get(Key::new(LPM_SLOT_BITS + LPM_CONN_BITS + 32, d))
                    .is_some()
            } else {
                let o = addr.octets();
                let d = [
                    slot, c[0], c[1], c[2], c[3], o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7],
                    o[8], o[9], o[10], o[11], o[12], o[13], o[14], o[15],
                ];
                VPN_LOCAL_V6
                    .get(Key::new(LPM_SLOT_BITS + LPM_CONN_BITS + 128, d))
                    .is_some()
            }
        }

        #[inline(always)]
        fn peer(&self, key: &PeerKey) -> Option<&PeerVal> {
            // SAFETY: as for `port`.
            unsafe { PEERS.get(key) }
        }
    }

    impl DataplaneMaps for Maps {
        #[inline(always)]
        fn iface(&self, ifindex: u32) -> Option<&Iface> {
            // SAFETY: as for `port`.
            unsafe { IFACES.get(&ifindex) }
        }

        #[inline(always)]
        fn ct_get(&mut self, key: &CtKey) -> Option<&mut CtVal> {
            // SAFETY: the entry lives in the map; an LRU eviction racing with
            // us can only make the writes land in a recycled element, which is
            // the accepted cost of lock-free conntrack (Cilium does the same).
            CT.get_ptr_mut(key).map(|p| unsafe { &mut *p })
        }

        #[inline(always)]
        fn ct_insert(&mut self, key: &CtKey, val: &CtVal) {
            let _ = CT.insert(key, val, 0);
        }

        #[inline(always)]
        fn ct_remove(&mut self, key: &CtKey) {
            let _ = CT.remove(key);
        }

        #[inline(always)]
        fn frag_get(&self, key: &FragKey) -> Option<&FragVal> {
            // SAFETY: as for `port`.
            unsafe { FRAGS.get(key) }
        }

        #[inline(always)]
        fn frag_insert(&mut self, key: &FragKey, val: &FragVal) {
            let _ = FRAGS.insert(key, val, 0);
        }

        #[inline(always)]
        fn count(&mut self, reason: Reason, bytes: u64) {
            if let Some(c) = STATS.get_ptr_mut(reason as u32) {
                // SAFETY: per-CPU slot, no other writer while we run.
                unsafe {
                    (*c).packets += 1;
                    (*c).bytes += bytes;
                }
            }
        }

        #[inline(always)]
        fn rule_hit(&mut self, slot: u8, rule: u32) {
            if rule < MAX_RULES {
                if let Some(c) = RULE_HITS.get_ptr_mut(slot as u32 * MAX_RULES + rule) {
                    // SAFETY: per-CPU slot.
                    unsafe { *c += 1 };
                }
            }
        }

        #[inline(always)]
        fn conn_bytes(&mut self, slot: u8, conn: u32, bytes: u64) {
            if conn < MAX_CONNS {
                if let Some(c) = CONN_STATS.get_ptr_mut(slot as u32 * MAX_CONNS + conn) {
                    // SAFETY: per-CPU slot.
                    unsafe {
                        (*c).packets += 1;
                        (*c).bytes += bytes;
                    }
                }
            }
        }
    }

    #[xdp]
    pub fn vpcgw_xdp(ctx: XdpContext) -> u32 {
        let frame = Frame {
            ctx: ctx.ctx,
            len: ctx.data_end() - ctx.data(),
        };
        let len = frame.len() as u64;
        let mut maps = Maps;
        // Conntrack counts seconds: the coarse clock (a variable read, not a
        // clocksource read, which is slow in a VM) is precise enough.
        // SAFETY: helper with no preconditions.
        let now = unsafe { bpf_ktime_get_coarse_ns() };
        let (Some(cfg), Some(work)) = (CONFIG.get(0), WORK.get_ptr_mut(0)) else {
            maps.count(Reason::DropNotReady, len);
            return xdp_action::XDP_DROP;
        };
        // SAFETY: this CPU's slot; nothing else uses it while we run.
        let work = unsafe { &mut *work };
        let head = Head::new(&ctx, frame.len);
        let mut parsed = parse_frame(&head, work);
        if parsed.is_err() && head.copied < frame.len {
            parsed = parse_frame(&frame, work);
        }
        let out = process_parsed(
            &mut maps,
            cfg,
            work,
            parsed,
            &frame,
            ctx.ingress_ifindex() as u32,
            ctx.rx_queue_index(),
            now,
        );
        work.reason = out.reason as u32;
        log_decision(&ctx, work);
        match out.action {
            Action::Pass => {
                maps.count(out.reason, len);
                xdp_action::XDP_PASS
            }
            Action::Drop => {
                maps.count(out.reason, len);
                xdp_action::XDP_DROP
            }
            Action::Redirect => {
                write_meta(&ctx, &out.meta(cfg));
                match XSKS.redirect(out.xsk_index, xdp_action::XDP_DROP as u64) {
                    Ok(action) => {
                        maps.count(Reason::VpnRedirect, len);
                        action
                    }
                    Err(_) => {
                        maps.count(Reason::VpnNoSocket, len);
                        xdp_action::XDP_DROP
                    }
                }
            }
        }
    }

    /// Debug log of decisions about new flows and drops (not the fast path).
    /// AYA_LOG_LEVEL is set at load time and frozen, so when debug logging is
    /// off the verifier sees this as dead code and it costs nothing.
    #[inline(always)]
    fn log_decision(ctx: &XdpContext, w: &Work) {
        // SAFETY: a plain read of our own per-CPU memory; volatile so LLVM
        // does not forward the value just stored (see Work::reason).
        let reason = unsafe { core::ptr::read_volatile(&w.reason) };
        if reason == Reason::PassEstablished as u32
            || reason == Reason::PassFragment as u32
            || reason == Reason::PassArp as u32
            || reason == Reason::PassNdp as u32
        {
            return;
        }
        // One statement, addresses as IPv6 (IPv4 shows as ::ffff:a.b.c.d):
        // every argument of an aya-log statement is verifier work.
        let p = &w.p;
        debug!(
            ctx,
            "reason {} {:i} -> {:i} proto {} dport {}",
            reason,
            p.src.octets(),
            p.dst.octets(),
            p.proto,
            p.dport
        );
    }

    /// Put the connection in front of the frame for the AF_XDP reader. If the
    /// driver has no metadata room the frame goes without; the reader then
    /// finds no magic and classifies it itself.
    #[inline(always)]
    fn write_meta(ctx: &XdpContext, meta: &XskMeta) {
        let size = core::mem::size_of::<XskMeta>() as i32;
        // SAFETY: helper call on our own context.
        if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -size) } != 0 {
            return;
        }
        let start = ctx.metadata();
        if start + size as usize > ctx.data() {
            return;
        }
        // SAFETY: [start, start + size) was just checked to end at or before data.
        unsafe { core::ptr::write_unaligned(start as *mut XskMeta, *meta) };
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

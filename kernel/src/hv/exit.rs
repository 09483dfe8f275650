//! What the hardware reports when a guest stops running, in terms shared by
//! every backend (SVM now, VMX later): the exit handler never sees a VMCB or
//! VMCS field.

/// Why the vCPU left the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// IN/OUT. The value is in RAX; `next_rip` follows the instruction.
    Io {
        port: u16,
        size: u8,
        write: bool,
        string: bool,
        rep: bool,
        next_rip: u64,
    },
    Hlt,
    Cpuid,
    MsrRead,
    MsrWrite,
    /// A hypercall (VMMCALL/VMCALL).
    Hypercall,
    /// Guest-physical access that nested paging does not map.
    NestedPageFault {
        gpa: u64,
        write: bool,
        fetch: bool,
    },
    /// Triple fault (or another cause of shutdown).
    Shutdown,
    /// A physical interrupt arrived for the host.
    Interrupt,
    /// The guest can take an interrupt now (requested with
    /// [`Vcpu::request_interrupt_window`]).
    InterruptWindow,
    Nmi,
    /// The hardware refused the guest state (VMRUN consistency checks).
    InvalidState,
    /// An exit the backend does not translate.
    Unknown(u64),
}

/// The guest's general-purpose registers (RSP, RIP and RFLAGS live with the
/// backend's control structure). Layout is fixed: the backends' entry code
/// saves and restores them by offset.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestRegs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rax: u64,
}

/// Exceptions the exit handler injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exception {
    /// #UD
    InvalidOpcode,
    /// #GP(0)
    GeneralProtection,
}

/// A segment register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

/// One virtual CPU of a VM, whatever the hardware extension.
pub trait Vcpu {
    /// Enters the guest until the next exit.
    fn run(&mut self) -> VmExit;
    fn regs(&mut self) -> &mut GuestRegs;
    fn rip(&self) -> u64;
    fn set_rip(&mut self, rip: u64);
    fn rflags(&self) -> u64;
    /// Delivers `e` to the guest at the next entry.
    fn inject(&mut self, e: Exception);
    /// Whether an event is already queued for the next entry.
    fn event_pending(&self) -> bool;
    /// Whether the guest would take an external interrupt now (IF set, no
    /// interrupt shadow).
    fn interruptible(&self) -> bool;
    /// Delivers external interrupt `vector` at the next entry.
    fn inject_interrupt(&mut self, vector: u8);
    /// Asks for a [`VmExit::InterruptWindow`] as soon as the guest can take an
    /// interrupt (or stops asking).
    fn request_interrupt_window(&mut self, on: bool);
    /// The guest's control registers, for walking its page tables.
    fn paging(&self) -> super::mmio::Paging;
    /// The base address of a segment (as the CPU uses it in this mode).
    fn segment_base(&self, seg: Segment) -> u64;
    fn rsp(&self) -> u64;
    fn set_rsp(&mut self, rsp: u64);
    /// Reads an MSR whose state the backend keeps (EFER, syscall MSRs, PAT, FS/GS base...).
    fn read_arch_msr(&self, msr: u32) -> Option<u64>;
    /// Writes such an MSR; false when the value is invalid (→ #GP).
    fn write_arch_msr(&mut self, msr: u32, value: u64) -> Option<bool>;
}

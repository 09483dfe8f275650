//! Finds the `\_S5` (soft-off) sleep type values in a DSDT's AML without an
//! AML interpreter: firmware declares `Name (_S5, Package () { a, b, ... })`,
//! and the two leading integers are what PM1a/PM1b `SLP_TYP` need.

const NAME_OP: u8 = 0x08;
const PACKAGE_OP: u8 = 0x12;
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const BYTE_PREFIX: u8 = 0x0a;

/// `(SLP_TYPa, SLP_TYPb)` for S5, or `None` if the DSDT declares no usable `_S5`.
pub fn find_s5(aml: &[u8]) -> Option<(u8, u8)> {
    let mut i = 0;
    while let Some(pos) = aml.get(i..)?.windows(4).position(|w| w == b"_S5_") {
        let at = i + pos;
        i = at + 1;
        // `NameOp _S5_` or `NameOp \_S5_`
        let named = match at {
            0 => false,
            _ if aml[at - 1] == NAME_OP => true,
            1 => false,
            _ => aml[at - 1] == b'\\' && aml[at - 2] == NAME_OP,
        };
        if !named || aml.get(at + 4) != Some(&PACKAGE_OP) {
            continue;
        }
        // PkgLength: the top two bits of the lead byte count extra bytes.
        let lead = *aml.get(at + 5)?;
        let mut p = at + 5 + 1 + usize::from(lead >> 6);
        let _num_elements = *aml.get(p)?;
        p += 1;
        let (a, next) = integer(aml, p)?;
        let (b, _) = integer(aml, next).unwrap_or((a, next));
        return Some((a, b));
    }
    None
}

fn integer(aml: &[u8], p: usize) -> Option<(u8, usize)> {
    match *aml.get(p)? {
        ZERO_OP => Some((0, p + 1)),
        ONE_OP => Some((1, p + 1)),
        BYTE_PREFIX => Some((*aml.get(p + 1)?, p + 2)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::find_s5;

    #[test]
    fn qemu_style_zero_package() {
        // Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })
        let aml = [
            0x10, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(find_s5(&aml), Some((0, 0)));
    }

    #[test]
    fn byte_prefixed_values_and_root_prefix() {
        // Name (\_S5, Package (0x02) { 0x07, 0x05 })
        let aml = [
            0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x07, 0x02, 0x0a, 0x07, 0x0a, 0x05,
        ];
        assert_eq!(find_s5(&aml), Some((7, 5)));
    }

    #[test]
    fn ignores_references_and_truncation() {
        // a method that references _S5_ without NameOp, then the real one
        let mut aml = vec![0x70, b'_', b'S', b'5', b'_', 0x60];
        aml.extend_from_slice(&[
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x05, 0x02, 0x01, 0x0a, 0x03,
        ]);
        assert_eq!(find_s5(&aml), Some((1, 3)));
        assert_eq!(find_s5(&aml[..aml.len() - 3]), None);
        assert_eq!(find_s5(b""), None);
        assert_eq!(find_s5(b"_S5_"), None);
        for cut in 0..aml.len() {
            let _ = find_s5(&aml[..cut]);
        }
    }
}

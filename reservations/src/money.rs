//! Currencies and amounts. Amounts arrive as decimals and are kept as integer
//! minor units of their currency, so every sum is exact and cheap.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The largest number of decimal places a currency may have.
pub const SCALE_MAX: u8 = 18;

/// The largest amount of one command, in minor units of its currency.
pub const AMOUNT_UNITS_MAX: u128 = 10u128.pow(28);

/// The largest magnitude of any balance or pool, in minor units: the largest
/// mantissa a `Decimal` holds, so every balance converts back exactly.
pub const BALANCE_UNITS_MAX: i128 = (1i128 << 96) - 1;

/// The most regions a cluster may have.
pub const REGIONS_MAX: usize = 7;

/// What one region may add, at most, to what an account of a bounded kind
/// holds there and has sent elsewhere: its credits less its debits there.
/// With at most [`REGIONS_MAX`] regions, an account's whole balance, and so
/// any one pool it gathers by grants, stays within [`BALANCE_UNITS_MAX`]:
/// a grant never overflows, so one source's releases never wait on it.
pub const REGION_CREDIT_UNITS_MAX: i128 = BALANCE_UNITS_MAX / REGIONS_MAX as i128;

/// A currency code: one to eight characters, `A`-`Z` and `0`-`9`, packed into
/// an integer so that it is `Copy` and compares in one instruction.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CurrencyCode(u64);

/// Text that is not a currency code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid currency code {0:?}: one to eight characters A-Z or 0-9")]
pub struct CurrencyCodeError(pub String);

impl CurrencyCode {
    pub fn new(code: &str) -> Result<Self, CurrencyCodeError> {
        let bytes = code.as_bytes();
        let valid = (1..=8).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !valid {
            return Err(CurrencyCodeError(code.to_owned()));
        }
        let mut packed = [0u8; 8];
        packed[..bytes.len()].copy_from_slice(bytes);
        Ok(Self(u64::from_be_bytes(packed)))
    }

    pub fn as_string(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.to_be_bytes().into_iter().take_while(|b| *b != 0) {
            write!(f, "{}", char::from(byte))?;
        }
        Ok(())
    }
}

impl fmt::Debug for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for CurrencyCode {
    type Err = CurrencyCodeError;
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::new(code)
    }
}

impl Serialize for CurrencyCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CurrencyCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// A registered currency: its code and how many decimal places it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Currency {
    pub code: CurrencyCode,
    pub scale: u8,
}

/// Why an amount was refused. Amounts are never rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AmountError {
    #[error("the amount is zero")]
    Zero,
    #[error("the amount is negative")]
    Negative,
    #[error("the amount has more than {scale} decimal places")]
    TooPrecise { scale: u8 },
    #[error("the amount is above the maximum of {max_units} minor units")]
    TooLarge { max_units: u128 },
}

impl Currency {
    /// The currencies every ledger starts with.
    pub fn defaults() -> Vec<Currency> {
        [
            ("USD", 2),
            ("EUR", 2),
            ("GBP", 2),
            ("BTC", 8),
            ("ETH", 18),
            ("POINTS", 0),
        ]
        .into_iter()
        .filter_map(|(code, scale)| {
            CurrencyCode::new(code)
                .ok()
                .map(|code| Currency { code, scale })
        })
        .collect()
    }

    /// The amount in minor units, or why it cannot be one. `10.50` and
    /// `10.500` are the same amount of USD; `10.505` is refused.
    pub fn units(&self, amount: Decimal) -> Result<u128, AmountError> {
        if amount.is_zero() {
            return Err(AmountError::Zero);
        }
        if amount.is_sign_negative() {
            return Err(AmountError::Negative);
        }
        let amount = amount.normalize();
        let places = u8::try_from(amount.scale()).unwrap_or(u8::MAX);
        if places > self.scale {
            return Err(AmountError::TooPrecise { scale: self.scale });
        }
        let too_large = AmountError::TooLarge {
            max_units: AMOUNT_UNITS_MAX,
        };
        let mantissa = u128::try_from(amount.mantissa()).map_err(|_| too_large)?;
        let units = 10u128
            .checked_pow(u32::from(self.scale - places))
            .and_then(|factor| mantissa.checked_mul(factor))
            .ok_or(too_large)?;
        if units > AMOUNT_UNITS_MAX {
            return Err(too_large);
        }
        Ok(units)
    }

    pub fn money(&self, units: i128) -> Money {
        Money {
            units,
            scale: self.scale,
        }
    }
}

/// An exact signed amount of minor units with its scale; prints as a decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub units: i128,
    pub scale: u8,
}

impl Money {
    /// The same amount as a `Decimal`, when it fits in one (any single balance
    /// does; a sum over many regions might not).
    pub fn to_decimal(&self) -> Option<Decimal> {
        Decimal::try_from_i128_with_scale(self.units, u32::from(self.scale)).ok()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.units < 0 { "-" } else { "" };
        let magnitude = self.units.unsigned_abs();
        if self.scale == 0 {
            return write!(f, "{sign}{magnitude}");
        }
        let factor = 10u128.pow(u32::from(self.scale));
        write!(
            f,
            "{sign}{}.{:0width$}",
            magnitude / factor,
            magnitude % factor,
            width = usize::from(self.scale)
        )
    }
}

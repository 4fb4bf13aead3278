//! The function catalog: every PromQL function we know, with its argument and return types,
//! whether it is experimental in Prometheus, and whether its result depends on the evaluation
//! time even when its arguments do not (which matters for step invariance and `@`).

use crate::promql::ast::ValueType;

use ValueType::{Matrix as M, Scalar as S, String as Str, Vector as V};

/// Argument and result types of a function.
#[derive(Debug)]
pub struct FuncInfo {
    pub name: &'static str,
    pub args: &'static [ValueType],
    /// 0: exactly `args`; n > 0: the last n arguments are optional; -1: the last repeats.
    pub variadic: i32,
    pub ret: ValueType,
    pub experimental: bool,
}

macro_rules! catalog {
    ($($variant:ident $name:literal [$($arg:expr),*] $var:literal $ret:expr, $exp:literal;)*) => {
        /// A PromQL function.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Func { $($variant),* }

        const INFOS: &[FuncInfo] = &[
            $(FuncInfo { name: $name, args: &[$($arg),*], variadic: $var, ret: $ret, experimental: $exp }),*
        ];

        const ALL: &[Func] = &[$(Func::$variant),*];
    };
}

catalog! {
    Abs "abs" [V] 0 V, false;
    Absent "absent" [V] 0 V, false;
    AbsentOverTime "absent_over_time" [M] 0 V, false;
    Acos "acos" [V] 0 V, false;
    Acosh "acosh" [V] 0 V, false;
    Asin "asin" [V] 0 V, false;
    Asinh "asinh" [V] 0 V, false;
    Atan "atan" [V] 0 V, false;
    Atanh "atanh" [V] 0 V, false;
    AvgOverTime "avg_over_time" [M] 0 V, false;
    Ceil "ceil" [V] 0 V, false;
    Changes "changes" [M] 0 V, false;
    Clamp "clamp" [V, S, S] 0 V, false;
    ClampMax "clamp_max" [V, S] 0 V, false;
    ClampMin "clamp_min" [V, S] 0 V, false;
    Cos "cos" [V] 0 V, false;
    Cosh "cosh" [V] 0 V, false;
    CountOverTime "count_over_time" [M] 0 V, false;
    DaysInMonth "days_in_month" [V] 1 V, false;
    DayOfMonth "day_of_month" [V] 1 V, false;
    DayOfWeek "day_of_week" [V] 1 V, false;
    DayOfYear "day_of_year" [V] 1 V, false;
    Deg "deg" [V] 0 V, false;
    Delta "delta" [M] 0 V, false;
    Deriv "deriv" [M] 0 V, false;
    DoubleExponentialSmoothing "double_exponential_smoothing" [M, S, S] 0 V, true;
    End "end" [] 0 S, true;
    Exp "exp" [V] 0 V, false;
    FirstOverTime "first_over_time" [M] 0 V, false;
    Floor "floor" [V] 0 V, false;
    HistogramAvg "histogram_avg" [V] 0 V, false;
    HistogramCount "histogram_count" [V] 0 V, false;
    HistogramFraction "histogram_fraction" [S, S, V] 0 V, false;
    HistogramQuantile "histogram_quantile" [S, V] 0 V, false;
    HistogramQuantiles "histogram_quantiles" [V, Str, S, S] 9 V, true;
    HistogramStddev "histogram_stddev" [V] 0 V, false;
    HistogramStdvar "histogram_stdvar" [V] 0 V, false;
    HistogramSum "histogram_sum" [V] 0 V, false;
    Hour "hour" [V] 1 V, false;
    Idelta "idelta" [M] 0 V, false;
    Increase "increase" [M] 0 V, false;
    Info "info" [V, V] 1 V, true;
    Irate "irate" [M] 0 V, false;
    LabelJoin "label_join" [V, Str, Str, Str] -1 V, false;
    LabelReplace "label_replace" [V, Str, Str, Str, Str] 0 V, false;
    LastOverTime "last_over_time" [M] 0 V, false;
    Ln "ln" [V] 0 V, false;
    Log10 "log10" [V] 0 V, false;
    Log2 "log2" [V] 0 V, false;
    MadOverTime "mad_over_time" [M] 0 V, true;
    MaxOf "max_of" [S, S] 0 S, true;
    MaxOverTime "max_over_time" [M] 0 V, false;
    MinOf "min_of" [S, S] 0 S, true;
    MinOverTime "min_over_time" [M] 0 V, false;
    Minute "minute" [V] 1 V, false;
    Month "month" [V] 1 V, false;
    Pi "pi" [] 0 S, false;
    PredictLinear "predict_linear" [M, S] 0 V, false;
    PresentOverTime "present_over_time" [M] 0 V, false;
    QuantileOverTime "quantile_over_time" [S, M] 0 V, false;
    Rad "rad" [V] 0 V, false;
    Range "range" [] 0 S, true;
    Rate "rate" [M] 0 V, false;
    Resets "resets" [M] 0 V, false;
    Round "round" [V, S] 1 V, false;
    Scalar "scalar" [V] 0 S, false;
    Sgn "sgn" [V] 0 V, false;
    Sin "sin" [V] 0 V, false;
    Sinh "sinh" [V] 0 V, false;
    Sort "sort" [V] 0 V, false;
    SortByLabel "sort_by_label" [V, Str] -1 V, true;
    SortByLabelDesc "sort_by_label_desc" [V, Str] -1 V, true;
    SortDesc "sort_desc" [V] 0 V, false;
    Sqrt "sqrt" [V] 0 V, false;
    Start "start" [] 0 S, true;
    StartTimestamp "start_timestamp" [V] 0 V, true;
    Step "step" [] 0 S, true;
    StddevOverTime "stddev_over_time" [M] 0 V, false;
    StdvarOverTime "stdvar_over_time" [M] 0 V, false;
    SumOverTime "sum_over_time" [M] 0 V, false;
    Tan "tan" [V] 0 V, false;
    Tanh "tanh" [V] 0 V, false;
    Time "time" [] 0 S, false;
    Timestamp "timestamp" [V] 0 V, false;
    TsOfFirstOverTime "ts_of_first_over_time" [M] 0 V, true;
    TsOfLastOverTime "ts_of_last_over_time" [M] 0 V, true;
    TsOfMaxOverTime "ts_of_max_over_time" [M] 0 V, true;
    TsOfMinOverTime "ts_of_min_over_time" [M] 0 V, true;
    Vector "vector" [S] 0 V, false;
    Year "year" [V] 1 V, false;
}

impl Func {
    pub fn info(self) -> &'static FuncInfo {
        &INFOS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn from_name(name: &str) -> Option<Func> {
        ALL.iter().copied().find(|f| f.name() == name)
    }

    /// Functions whose result changes with the evaluation time although their arguments do not
    /// (Prometheus's "@ modifier unsafe" functions).
    pub fn depends_on_eval_time(self) -> bool {
        matches!(
            self,
            Func::DaysInMonth
                | Func::DayOfMonth
                | Func::DayOfWeek
                | Func::DayOfYear
                | Func::End
                | Func::Hour
                | Func::Minute
                | Func::Month
                | Func::Year
                | Func::PredictLinear
                | Func::Range
                | Func::Start
                | Func::Step
                | Func::Time
                | Func::Timestamp
        )
    }

    /// The expected type of argument `i`.
    pub fn arg_type(self, i: usize) -> Option<ValueType> {
        let info = self.info();
        match info.args.get(i) {
            Some(t) => Some(*t),
            None if info.variadic != 0 => info.args.last().copied(),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent() {
        for (i, f) in ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
            assert_eq!(Func::from_name(f.name()), Some(*f));
        }
        assert_eq!(Func::from_name("rate"), Some(Func::Rate));
        assert_eq!(Func::Rate.arg_type(0), Some(ValueType::Matrix));
        assert_eq!(Func::LabelJoin.arg_type(7), Some(ValueType::String));
    }
}

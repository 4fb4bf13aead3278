//! A recursive-descent pass over PromQL tokens that builds a tree of node positions with the
//! same shape as the expression tree, and finds the first syntax error with its position.
//!
//! promql-parser builds the expression tree we evaluate, but its nodes carry no positions and its
//! syntax errors say only "invalid promql query". Prometheus reports both (`1:7: parse error:
//! unexpected …`, annotations ending in `(1:5)`), so this pass supplies them. It checks syntax
//! only; types and argument counts stay promql-parser's and our lowering's business.

use super::lex::{self, AGGREGATORS, LexError, Tok, Token};

/// A byte range of the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// The shape of a node, matching promql-parser's `Expr` variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Number,
    String,
    Vector,
    Matrix,
    Subquery,
    Paren,
    Unary,
    Binary,
    Aggregate,
    Call,
}

/// A node's kind, position and children in evaluation order (for an aggregation: the parameter,
/// if any, then the expression; for a call: its arguments).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) span: Span,
    pub(crate) children: Vec<Node>,
    /// For string literals: the decoded bytes (possibly not UTF-8, as Go allows).
    pub(crate) bytes: Option<Vec<u8>>,
}

impl Node {
    fn leaf(kind: Kind, span: Span) -> Node {
        Node { kind, span, children: Vec::new(), bytes: None }
    }
}

/// A syntax error at a byte offset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct SyntaxError {
    pub(crate) pos: usize,
    pub(crate) message: String,
}

impl From<LexError> for SyntaxError {
    fn from(e: LexError) -> SyntaxError {
        SyntaxError { pos: e.pos, message: e.message }
    }
}

/// Parses `src` into its position tree.
pub(crate) fn parse(src: &str) -> Result<Node, SyntaxError> {
    let tokens = lex::tokenize(src)?;
    let mut p = Parser { src, tokens, i: 0 };
    if p.peek().tok == Tok::Eof {
        return Err(SyntaxError { pos: 0, message: "no expression found in input".to_string() });
    }
    let node = p.expr(0)?;
    if p.peek().tok != Tok::Eof {
        return Err(p.unexpected(""));
    }
    Ok(node)
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    i: usize,
}

/// Binary operators and their precedence (higher binds tighter).
fn binary_precedence(p: &Parser<'_>, t: &Token) -> Option<u8> {
    match &t.tok {
        Tok::Op("^") => Some(6),
        Tok::Op("*" | "/" | "%") => Some(5),
        Tok::Op("+" | "-") => Some(4),
        Tok::Op("==" | "!=" | "<" | "<=" | ">" | ">=") => Some(3),
        Tok::Ident => match p.text(t).to_ascii_lowercase().as_str() {
            "atan2" => Some(5),
            "and" | "unless" => Some(2),
            "or" => Some(1),
            _ => None,
        },
        _ => None,
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Token {
        &self.tokens[self.i.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &Token {
        &self.tokens[(self.i + n).min(self.tokens.len() - 1)]
    }

    fn text(&self, t: &Token) -> &'a str {
        &self.src[t.start..t.end]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.tokens.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn word_is(&self, t: &Token, w: &str) -> bool {
        t.tok == Tok::Ident && self.text(t).eq_ignore_ascii_case(w)
    }

    fn unexpected(&self, context: &str) -> SyntaxError {
        let t = self.peek();
        SyntaxError { pos: t.start, message: format!("unexpected {}{context}", lex::describe(self.src, t)) }
    }

    fn expect(&mut self, tok: Tok, context: &str) -> Result<Token, SyntaxError> {
        if self.peek().tok == tok { Ok(self.next()) } else { Err(self.unexpected(context)) }
    }

    /// Precedence climbing; `^` is right-associative.
    fn expr(&mut self, min_prec: u8) -> Result<Node, SyntaxError> {
        let mut lhs = self.unary()?;
        loop {
            let t = self.peek().clone();
            let Some(prec) = binary_precedence(self, &t) else { break };
            if prec < min_prec {
                break;
            }
            self.next();
            self.bin_modifiers()?;
            let next_min = if t.tok == Tok::Op("^") { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            let span = Span { start: lhs.span.start, end: rhs.span.end };
            lhs = Node { kind: Kind::Binary, span, children: vec![lhs, rhs], bytes: None };
        }
        Ok(lhs)
    }

    /// `bool`, `on`/`ignoring (…)`, `group_left`/`group_right [(…)]`, `fill…(…)` after an operator.
    fn bin_modifiers(&mut self) -> Result<(), SyntaxError> {
        if self.word_is(&self.peek().clone(), "bool") {
            self.next();
        }
        let t = self.peek().clone();
        if self.word_is(&t, "on") || self.word_is(&t, "ignoring") {
            self.next();
            self.label_list()?;
            let t = self.peek().clone();
            if self.word_is(&t, "group_left") || self.word_is(&t, "group_right") {
                self.next();
                if self.peek().tok == Tok::LParen {
                    self.label_list()?;
                }
            }
        }
        loop {
            let t = self.peek().clone();
            let is_fill = ["fill", "fill_left", "fill_right"].iter().any(|w| self.word_is(&t, w));
            if !(is_fill && self.peek_at(1).tok == Tok::LParen) {
                return Ok(());
            }
            self.next();
            self.next();
            if self.peek().tok == Tok::Op("-") || self.peek().tok == Tok::Op("+") {
                self.next();
            }
            self.next();
            self.expect(Tok::RParen, "")?;
        }
    }

    /// `( name, name, … )` with an optional trailing comma.
    fn label_list(&mut self) -> Result<(), SyntaxError> {
        self.expect(Tok::LParen, "")?;
        loop {
            match self.peek().tok {
                Tok::RParen => {
                    self.next();
                    return Ok(());
                }
                Tok::Ident | Tok::Str(_) => {
                    self.next();
                }
                _ => return Err(self.unexpected(" in grouping opts, expected label")),
            }
            match self.peek().tok {
                Tok::Comma => {
                    self.next();
                }
                Tok::RParen => {}
                _ => return Err(self.unexpected(" in grouping opts, expected \")\" or \",\"")),
            }
        }
    }

    fn unary(&mut self) -> Result<Node, SyntaxError> {
        let t = self.peek().clone();
        if let Tok::Op(op @ ("+" | "-")) = t.tok {
            self.next();
            // Unary operators bind tighter than `*` but looser than `^`: -a^b is -(a^b).
            let inner = self.expr(6)?;
            let span = Span { start: t.start, end: inner.span.end };
            if op == "+" {
                return Ok(Node { span, ..inner });
            }
            return Ok(Node { kind: Kind::Unary, span, children: vec![inner], bytes: None });
        }
        self.postfix()
    }

    /// A primary expression followed by range, subquery, `offset` and `@` modifiers.
    fn postfix(&mut self) -> Result<Node, SyntaxError> {
        let mut node = self.primary()?;
        loop {
            let t = self.peek().clone();
            if t.tok == Tok::LBracket {
                self.next();
                self.duration_like("in range, expected duration")?;
                if self.peek().tok == Tok::Colon {
                    self.next();
                    if self.peek().tok != Tok::RBracket {
                        self.duration_like("in subquery, expected duration")?;
                    }
                    let end = self.expect(Tok::RBracket, " in subquery selector, expected \"]\"")?;
                    node = Node {
                        kind: Kind::Subquery,
                        span: Span { start: node.span.start, end: end.end },
                        children: vec![node],
                        bytes: None,
                    };
                } else {
                    let end = self.expect(Tok::RBracket, " in range selector, expected \"]\"")?;
                    if node.kind != Kind::Vector {
                        return Err(SyntaxError {
                            pos: node.span.start,
                            message: "ranges only allowed for vector selectors".to_string(),
                        });
                    }
                    node = Node::leaf(Kind::Matrix, Span { start: node.span.start, end: end.end });
                }
                continue;
            }
            if self.word_is(&t, "offset") {
                self.next();
                if matches!(self.peek().tok, Tok::Op("-" | "+")) {
                    self.next();
                }
                let d = self.duration_like(" in offset, expected duration")?;
                node.span.end = d;
                continue;
            }
            if t.tok == Tok::At {
                self.next();
                let t = self.peek().clone();
                let end = if self.word_is(&t, "start") || self.word_is(&t, "end") {
                    self.next();
                    self.expect(Tok::LParen, "")?;
                    self.expect(Tok::RParen, "")?.end
                } else {
                    if matches!(self.peek().tok, Tok::Op("-" | "+")) {
                        self.next();
                    }
                    match self.peek().tok {
                        Tok::Number | Tok::Duration => self.next().end,
                        _ => return Err(self.unexpected(" in @, expected timestamp")),
                    }
                };
                node.span.end = end;
                continue;
            }
            if self.word_is(&t, "anchored") || self.word_is(&t, "smoothed") {
                self.next();
                node.span.end = t.end;
                continue;
            }
            return Ok(node);
        }
    }

    /// A duration or a number (promql-parser does not take duration expressions); returns its
    /// end offset.
    fn duration_like(&mut self, context: &str) -> Result<usize, SyntaxError> {
        match self.peek().tok {
            Tok::Duration | Tok::Number => Ok(self.next().end),
            _ => Err(self.unexpected(context)),
        }
    }

    fn primary(&mut self) -> Result<Node, SyntaxError> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Number | Tok::Duration => {
                self.next();
                Ok(Node::leaf(Kind::Number, Span { start: t.start, end: t.end }))
            }
            Tok::Str(bytes) => {
                self.next();
                let mut n = Node::leaf(Kind::String, Span { start: t.start, end: t.end });
                n.bytes = Some(bytes.clone());
                Ok(n)
            }
            Tok::LParen => {
                self.next();
                let inner = self.expr(0)?;
                let end = self.expect(Tok::RParen, " in paren expression, expected \")\"")?;
                Ok(Node {
                    kind: Kind::Paren,
                    span: Span { start: t.start, end: end.end },
                    children: vec![inner],
                    bytes: None,
                })
            }
            Tok::LBrace => {
                let end = self.matchers()?;
                Ok(Node::leaf(Kind::Vector, Span { start: t.start, end }))
            }
            Tok::Ident => {
                let word = self.text(&t).to_ascii_lowercase();
                if word == "inf" || word == "nan" {
                    self.next();
                    return Ok(Node::leaf(Kind::Number, Span { start: t.start, end: t.end }));
                }
                if AGGREGATORS.contains(&word.as_str()) {
                    return self.aggregation();
                }
                if self.peek_at(1).tok == Tok::LParen {
                    return self.call();
                }
                if matches!(
                    word.as_str(),
                    "by" | "without"
                        | "on"
                        | "ignoring"
                        | "group_left"
                        | "group_right"
                        | "bool"
                        | "offset"
                        | "and"
                        | "or"
                        | "unless"
                        | "atan2"
                ) {
                    return Err(self.unexpected(""));
                }
                self.next();
                let mut end = t.end;
                if self.peek().tok == Tok::LBrace {
                    end = self.matchers()?;
                }
                Ok(Node::leaf(Kind::Vector, Span { start: t.start, end }))
            }
            _ => Err(self.unexpected("")),
        }
    }

    /// `{ matcher, … }`; returns the end offset of the closing brace.
    fn matchers(&mut self) -> Result<usize, SyntaxError> {
        const CTX: &str = " in label matching";
        self.expect(Tok::LBrace, "")?;
        loop {
            match self.peek().tok {
                Tok::RBrace => return Ok(self.next().end),
                Tok::Ident | Tok::Str(_) => {
                    let name = self.next();
                    match self.peek().tok {
                        Tok::Op("=" | "!=" | "=~" | "!~") => {
                            self.next();
                            if !matches!(self.peek().tok, Tok::Str(_)) {
                                return Err(self.unexpected(&format!("{CTX}, expected string")));
                            }
                            self.next();
                        }
                        // A quoted metric name alone: {"my.metric", a="b"}.
                        Tok::Comma | Tok::RBrace if matches!(name.tok, Tok::Str(_)) => {}
                        _ => return Err(self.unexpected(&format!("{CTX}, expected label matching operator"))),
                    }
                }
                _ => return Err(self.unexpected(&format!("{CTX}, expected identifier or \"}}\""))),
            }
            // `or` between matcher groups.
            let t = self.peek().clone();
            if self.word_is(&t, "or") {
                self.next();
                continue;
            }
            match self.peek().tok {
                Tok::Comma => {
                    self.next();
                }
                Tok::RBrace => {}
                _ => return Err(self.unexpected(&format!("{CTX}, expected \",\" or \"}}\""))),
            }
        }
    }

    fn call(&mut self) -> Result<Node, SyntaxError> {
        let name = self.next();
        self.expect(Tok::LParen, "")?;
        let mut args = Vec::new();
        loop {
            if self.peek().tok == Tok::RParen {
                break;
            }
            args.push(self.expr(0)?);
            match self.peek().tok {
                Tok::Comma => {
                    self.next();
                }
                Tok::RParen => {}
                _ => return Err(self.unexpected(" in call, expected \",\" or \")\"")),
            }
        }
        let end = self.next().end;
        Ok(Node { kind: Kind::Call, span: Span { start: name.start, end }, children: args, bytes: None })
    }

    /// `op [by|without (…)] ([param,] expr) [by|without (…)]`
    fn aggregation(&mut self) -> Result<Node, SyntaxError> {
        let op = self.next();
        let t = self.peek().clone();
        if self.word_is(&t, "by") || self.word_is(&t, "without") {
            self.next();
            self.label_list()?;
        }
        self.expect(Tok::LParen, "")?;
        let mut args = Vec::new();
        loop {
            if self.peek().tok == Tok::RParen {
                break;
            }
            args.push(self.expr(0)?);
            match self.peek().tok {
                Tok::Comma => {
                    self.next();
                }
                Tok::RParen => {}
                _ => return Err(self.unexpected(" in aggregation, expected \",\" or \")\"")),
            }
        }
        let mut end = self.next().end;
        let t = self.peek().clone();
        if self.word_is(&t, "by") || self.word_is(&t, "without") {
            self.next();
            let before = self.i;
            self.label_list()?;
            end = self.tokens[self.i.max(before) - 1].end;
        }
        Ok(Node { kind: Kind::Aggregate, span: Span { start: op.start, end }, children: args, bytes: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n: &Node) -> String {
        if n.children.is_empty() {
            format!("{:?}@{}", n.kind, n.span.start)
        } else {
            let c: Vec<String> = n.children.iter().map(shape).collect();
            format!("{:?}@{}({})", n.kind, n.span.start, c.join(" "))
        }
    }

    fn ok(s: &str) -> String {
        match parse(s) {
            Ok(n) => shape(&n),
            Err(e) => panic!("{s}: {e:?}"),
        }
    }

    #[test]
    fn shapes_follow_precedence() {
        assert_eq!(ok("a + b * c"), "Binary@0(Vector@0 Binary@4(Vector@4 Vector@8))");
        assert_eq!(ok("2 ^ 3 ^ 2"), "Binary@0(Number@0 Binary@4(Number@4 Number@8))");
        assert_eq!(ok("-a ^ 2"), "Unary@0(Binary@1(Vector@1 Number@5))");
        assert_eq!(ok("sum by (a) (rate(x[5m]))"), "Aggregate@0(Call@12(Matrix@17))");
        assert_eq!(ok("topk(3, x) or on() y"), "Binary@0(Aggregate@0(Number@5 Vector@8) Vector@19)");
        assert_eq!(ok("(x)[5m:] @ start() offset 1m"), "Subquery@0(Paren@0(Vector@1))");
    }

    #[test]
    fn errors_have_positions() {
        let e = |s: &str| match parse(s) {
            Ok(n) => panic!("{s} parsed: {n:?}"),
            Err(e) => (e.pos, e.message),
        };
        assert_eq!(e("sum(x) +"), (8, "unexpected end of input".to_string()));
        assert_eq!(e("foo{a=}"), (6, "unexpected \"}\" in label matching, expected string".to_string()));
        assert_eq!(
            e("rate(x[5m]"),
            (10, "unexpected end of input in call, expected \",\" or \")\"".to_string())
        );
        assert_eq!(e("x y").0, 2);
    }
}

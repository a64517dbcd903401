// Package cron reads the five-field schedule expressions of cron(8) and says when one is next
// due, for sealpost's schedules (`sealpost schedule add NAME --cron "0 3 * * *"`).
//
// # Expressions
//
// Five fields separated by blanks: minute (0-59), hour (0-23), day of month (1-31), month
// (1-12) and day of week (0-7, where both 0 and 7 are Sunday). Each field is a comma-separated
// list of items; an item is `*`, a number, a range `a-b`, or either of `*` and `a-b` followed by
// a step `/n`. Names (JAN, MON), the `@daily` shorthands, seconds and years are not accepted:
// one spelling for each schedule, and an error rather than a guess for anything else.
//
// When both day fields are restricted (neither starts with `*`), a day matches when either
// does, as in every cron since Vixie's: `0 0 1 * 1` runs on the first of the month and on
// every Monday.
//
// # Invariants
//
//   - Parse returns an error of type *ParseError (naming the field) or a usable *Expr, never both.
//   - Parse(e.String()) is e: String gives the fields as parsed, separated by single spaces.
//   - Next(t) is after t, at a whole minute, matches the expression, and no earlier minute
//     after t does; it is the zero time only for an expression that matches no date in the next
//     few years (30 February).
//
// cron imports only the standard library; node is its only user.
package cron

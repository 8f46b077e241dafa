using System.Net;
using Bastion.Configuration;

namespace Bastion.Policy;

public sealed class CompiledRule
{
    public required int Index { get; init; }
    public required Verdict Verdict { get; init; }
    public required Condition[] Conditions { get; init; }
    /// <summary>The rule's name, or `policy#index` (1-based), as logged.</summary>
    public required string Name { get; init; }
    public string? Reason { get; init; }
    public bool IsResponse { get; init; }
    public SourcePos Pos { get; init; }

    /// <summary>Names the upgrade explicitly (`upgrade:`, or a `header` condition on Upgrade): only such a rule allows one.</summary>
    public bool NamesUpgrade => Conditions.Any(c => c is UpgradeCondition || (c is HeaderCondition h && h.Names.Any(n => n.Equals("Upgrade", StringComparison.OrdinalIgnoreCase))));

    /// <summary>Asks about `host` IPs/CIDRs: tried again for every address a name resolves to.</summary>
    public bool JudgesAddresses => Conditions.Any(c => c.JudgesAddresses);

    public bool Matches(RequestAttributes a)
    {
        foreach (var c in Conditions)
            if (!c.Matches(a)) return false;
        return true;
    }
}

/// <summary>
/// A policy compiled at load: request rules tried in order at request time, response rules when the
/// response head arrives (SPEC 2.1). <see cref="Evaluate"/> allocates nothing unless a trace is asked for.
/// </summary>
public sealed class CompiledPolicy
{
    public string Name { get; }
    public Verdict Default { get; }
    public CompiledRule[] RequestRules { get; }
    public CompiledRule[] ResponseRules { get; }
    public CompiledRule[] AllRules { get; }
    /// <summary>Request rules with `host` IPs/CIDRs, in order: what every resolved address is asked about.</summary>
    public CompiledRule[] AddressRules { get; }
    /// <summary>Headers named by `header` conditions (for refusing conflicting duplicates of them).</summary>
    public string[] JudgedHeaders { get; }
    readonly Decision _default;

    public bool HasResponseRules => ResponseRules.Length > 0;
    public bool HasAddressRules => AddressRules.Length > 0;
    readonly HashSet<string> _upgradeRules;

    /// <summary>
    /// Whether the rule that allowed a request named the upgrade it asks for: a WebSocket (or any) upgrade turns the
    /// connection into a tunnel the policy no longer sees, so a general `allow` is not enough (issue 9).
    /// </summary>
    public bool AllowsUpgrade(Decision d) => d.Allowed && _upgradeRules.Contains(d.RuleName);

    public CompiledPolicy(string name, Verdict def, CompiledRule[] rules)
    {
        Name = name;
        Default = def;
        AllRules = rules;
        RequestRules = [.. rules.Where(r => !r.IsResponse)];
        ResponseRules = [.. rules.Where(r => r.IsResponse)];
        AddressRules = [.. RequestRules.Where(r => r.JudgesAddresses)];
        _upgradeRules = new HashSet<string>(RequestRules.Where(r => r.NamesUpgrade && r.Verdict == Verdict.Allow).Select(r => r.Name), StringComparer.Ordinal);
        JudgedHeaders = [.. rules.SelectMany(r => HeaderNames(r.Conditions)).Distinct(StringComparer.OrdinalIgnoreCase)];
        _default = new Decision(def, $"{name}#default", def == Verdict.Deny ? "no rule allows it" : null);
    }

    public Decision Evaluate(RequestAttributes a, PolicyTrace? trace = null) => FirstMatch(RequestRules, a, trace);

    /// <summary>
    /// Every rule, request and response alike, in order: for protocols with one moment of decision where a
    /// `size` is the request's own (smtp: the message at end of data). The default decides when none matches.
    /// </summary>
    public Decision EvaluateAll(RequestAttributes a, PolicyTrace? trace = null) => FirstMatch(AllRules, a, trace);

    Decision FirstMatch(CompiledRule[] rules, RequestAttributes a, PolicyTrace? trace)
    {
        foreach (var r in rules)
        {
            if (trace is not null) TraceRule(trace, r, a);
            if (r.Matches(a))
            {
                trace?.Add($"=> {(r.Verdict == Verdict.Allow ? "allow" : "deny")} by {r.Name}{(r.Reason is null ? "" : $" ({r.Reason})")}");
                return new Decision(r.Verdict, r.Name, r.Reason ?? (r.Verdict == Verdict.Deny ? "denied by policy" : null));
            }
        }
        trace?.Add($"=> {(Default == Verdict.Allow ? "allow" : "deny")} by default of policy '{Name}'");
        return _default;
    }

    /// <summary>
    /// The first header named by a `header` rule that arrives on several field lines with differing values (`X-Debug: 0`
    /// then `X-Debug: 1`), or null: for listeners that refuse such requests (`conflicting_headers: refuse`).
    /// </summary>
    public string? ConflictingHeader(IHeaderSource headers)
    {
        foreach (var name in JudgedHeaders)
        {
            if (!headers.TryGetLine(name, 0, out var first)) continue;
            var f = HeaderValue.TrimOws(first);
            for (int i = 1; headers.TryGetLine(name, i, out var other); i++)
                if (!HeaderValue.TrimOws(other).SequenceEqual(f)) return name;
        }
        return null;
    }

    static IEnumerable<string> HeaderNames(IEnumerable<Condition> conditions)
    {
        foreach (var c in conditions)
        {
            if (c is HeaderCondition h) foreach (var n in h.Names) yield return n;
            else if (c is NotCondition n) foreach (var x in HeaderNames(n.Inner)) yield return x;
        }
    }

    /// <summary>
    /// After DNS: one address a request's name resolved to, judged by the address rules in order as if the client
    /// had asked for that address (SPEC 2.1). The first address rule that matches decides for it; when none does,
    /// null: the verdict on the name stands. The attributes are left as they were.
    /// </summary>
    public Decision? JudgeAddress(RequestAttributes a, IPAddress address, PolicyTrace? trace = null)
    {
        if (AddressRules.Length == 0) return null;
        var saved = a.Address;
        a.Address = TargetAddress.Effective(address);
        try
        {
            foreach (var r in AddressRules)
            {
                if (trace is not null) TraceRule(trace, r, a);
                if (r.Matches(a))
                {
                    trace?.Add($"=> address {address} {(r.Verdict == Verdict.Allow ? "allowed" : "denied")} by {r.Name}");
                    return new Decision(r.Verdict, r.Name, r.Reason ?? (r.Verdict == Verdict.Deny ? $"{a.Host} resolves to {address}, which the policy denies" : null));
                }
            }
            trace?.Add($"=> address {address}: no address rule matches; the verdict on the name stands");
            return null;
        }
        finally { a.Address = saved; }
    }

    /// <summary>Response rules with the request's attributes plus the response's; none matching lets the response pass.</summary>
    public Decision EvaluateResponse(RequestAttributes a, PolicyTrace? trace = null)
    {
        foreach (var r in ResponseRules)
        {
            if (trace is not null) TraceRule(trace, r, a);
            if (r.Matches(a))
            {
                trace?.Add($"=> response {(r.Verdict == Verdict.Allow ? "allowed" : "denied")} by {r.Name}");
                return new Decision(r.Verdict, r.Name, r.Reason ?? (r.Verdict == Verdict.Deny ? "response denied by policy" : null));
            }
        }
        trace?.Add("=> response passes (no response rule matched)");
        return Decision.ResponsePass;
    }

    static void TraceRule(PolicyTrace trace, CompiledRule r, RequestAttributes a)
    {
        var parts = r.Conditions.Length == 0
            ? "(matches everything)"
            : string.Join(", ", r.Conditions.Select(c => $"{c.Describe()}: {(c.Matches(a) ? "yes" : "no")}"));
        trace.Add($"rule {r.Name} [{(r.Verdict == Verdict.Allow ? "allow" : "deny")}{(r.IsResponse ? ", response" : "")}] {parts} -> {(r.Matches(a) ? "MATCH" : "no match")}");
    }
}

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
    readonly Decision _default;

    public bool HasResponseRules => ResponseRules.Length > 0;

    public CompiledPolicy(string name, Verdict def, CompiledRule[] rules)
    {
        Name = name;
        Default = def;
        AllRules = rules;
        RequestRules = [.. rules.Where(r => !r.IsResponse)];
        ResponseRules = [.. rules.Where(r => r.IsResponse)];
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

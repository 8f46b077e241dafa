using Bastion.Configuration;

namespace Bastion.Policy;

/// <summary>A verdict with the rule that made it: <see cref="RuleName"/> is the rule's name or `policy#index`.</summary>
public readonly record struct Decision(Verdict Verdict, string RuleName, string? Reason)
{
    public bool Allowed => Verdict == Verdict.Allow;
    public string VerdictText => Verdict == Verdict.Allow ? "allow" : "deny";

    /// <summary>A response that no response rule matched passes.</summary>
    public static readonly Decision ResponsePass = new(Verdict.Allow, "", null);

    public static Decision Deny(string rule, string reason) => new(Verdict.Deny, rule, reason);
}

/// <summary>What `explain` prints: every rule tried, whether it matched, and each condition's result.</summary>
public sealed class PolicyTrace
{
    public List<string> Lines { get; } = [];

    public void Add(string line) => Lines.Add(line);

    public override string ToString() => string.Join(Environment.NewLine, Lines);
}

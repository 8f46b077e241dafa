namespace Bastion.Configuration;

/// <summary>
/// Checks that catch half-written or mistyped configurations `check` used to pass: nothing to run, an admin token
/// anyone could guess, port 0 towards an upstream, route methods and hosts that are not HTTP's.
/// </summary>
public static class SanityChecks
{
    /// <summary>Shorter bearer tokens are refused: `openssl rand -hex 24` gives 48 characters.</summary>
    public const int MinTokenLength = 16;

    /// <summary>
    /// For what is run or checked as a whole (`run`, reload, `check`): a configuration with no listener is an error.
    /// Not part of <see cref="Validate"/>, so that policies can be built and tested on their own. Said only when nothing
    /// else is wrong: a listener with an error (an unknown type) is left out of the model, and "no listeners" after
    /// "unknown listener type" sends the reader looking for the wrong mistake.
    /// </summary>
    public static ConfigError? NothingToRun(BastionConfig c, IEnumerable<ConfigError> errorsSoFar) => c.Listeners.IsEmpty && errorsSoFar.All(e => e.IsWarning)
        ? new ConfigError(new SourcePos(c.Path ?? ConfigLoader.DefaultName, 1, 1), "no listeners: nothing to run (add one under 'listeners:', see examples/)")
        : null;

    public static List<ConfigError> Validate(BastionConfig c)
    {
        var errors = new List<ConfigError>();
        void Err(SourcePos p, string m, bool warning = false) => errors.Add(new ConfigError(p, m, warning));

        if (c.Admin is { TokenFile: { } tf } admin && ConfigValidator.ReadToken(c.Resolve(tf)) is { } token && token.Length < MinTokenLength)
            Err(admin.Pos, $"admin.token_file: the token in {c.Resolve(tf)} has {token.Length} characters; use at least {MinTokenLength} (openssl rand -hex 24)");

        foreach (var l in c.Listeners)
        {
            if (l.Upstream is { } u && HostPort.TryParse(u, out var hp) && hp!.Port == 0)
                Err(l.PosOf("upstream"), $"listener '{l.Name}': upstream '{u}': the port must be 1-65535");
            foreach (var r in l.Routes)
            {
                foreach (var m in r.Methods)
                    if (ValueChecks.Method(m) is { } problem) Err(r.Pos, $"listener '{l.Name}': route {problem.Message}", problem.IsWarning);
                if (r.Host is { } h && h != "*" && !ValueChecks.IsHostName(h.StartsWith("*.", StringComparison.Ordinal) ? h[2..] : h))
                    Err(r.Pos, $"listener '{l.Name}': route host '{h}' is not a host name (letters, digits, '-' and '.')");
            }
        }
        foreach (var (name, up) in c.Upstreams)
            foreach (var t in up.Targets)
                if (TargetPort(t) == 0) Err(up.Pos, $"upstream '{name}': target '{t}': the port must be 1-65535");
        return errors;
    }

    static int? TargetPort(string target)
    {
        if (Uri.TryCreate(target, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" or "tcp") return uri.Port;
        return HostPort.TryParse(target, out var hp) ? hp!.Port : null;
    }
}

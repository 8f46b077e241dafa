using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Identity;
using Bastion.Policy;

namespace Bastion.Protocols.Http;

/// <summary>
/// The decisions the forward and the reverse proxy make the same way: the request decision (policy plus the
/// TRACE rule), response rules on the response head, and Basic authentication.
/// </summary>
public static class HttpDecisions
{
    /// <summary>
    /// The policy's decision, with one rule of the gateway's own: TRACE echoes requests back (credentials, cookies:
    /// cross-site tracing), so it is denied unless an <em>allowing</em> rule names it in a `method` condition. A
    /// deny rule naming TRACE does not unlock it.
    /// </summary>
    public static Decision Decide(CompiledPolicy policy, RequestAttributes a, PolicyTrace? trace = null)
    {
        var d = policy.Evaluate(a, trace);
        if (d.Allowed && a.Method == "TRACE" && !AllowsExplicitly(policy, "TRACE"))
        {
            trace?.Add("=> TRACE is denied unless an allowing rule names it in `method`");
            d = Decision.Deny(d.RuleName, "TRACE is denied unless a rule names it");
        }
        return d;
    }

    /// <summary>An allow rule with a `method` condition that admits <paramref name="method"/>.</summary>
    static bool AllowsExplicitly(CompiledPolicy policy, string method)
    {
        var probe = new RequestAttributes { Method = method };
        foreach (var r in policy.RequestRules)
        {
            if (r.Verdict != Verdict.Allow) continue;
            foreach (var c in r.Conditions)
                if (c.Attribute == "method" && c.Matches(probe)) return true;
        }
        return false;
    }

    /// <summary>Response rules on the response head: the request's attributes plus the content type and the announced length.</summary>
    public static Decision JudgeResponse(CompiledPolicy policy, RequestAttributes a, string? contentType, long? length)
    {
        a.ContentType = contentType;
        a.Size = length ?? -1;
        return policy.EvaluateResponse(a);
    }

    /// <summary>True when some response rule asks about `size`: a body of unknown length is then watched as it streams.</summary>
    public static bool WatchesSize(CompiledPolicy policy)
    {
        foreach (var r in policy.ResponseRules)
            foreach (var c in r.Conditions)
                if (c.Attribute == "size") return true;
        return false;
    }

    /// <summary>
    /// The outcome of Basic authentication: the user, or why not (and the name that was tried, for the log;
    /// <see cref="Throttled"/>: the client failed too often lately).
    /// </summary>
    public readonly record struct AuthResult(string? User, bool Sent, string? Failure, string? Tried = null, bool Throttled = false)
    {
        public bool Ok => User is not null;
    }

    /// <summary>
    /// Checks a `Basic` Authorization or Proxy-Authorization value against the identity store, throttled per
    /// <paramref name="client"/> address (unknown users cost what wrong passwords cost); credentials that were sent
    /// and do not verify count as an authentication failure in the metrics.
    /// </summary>
    public static async ValueTask<AuthResult> AuthenticateAsync(ListenerContext ctx, string? header, System.Net.IPAddress? client, CancellationToken ct)
    {
        if (!IdentityStore.TryParseBasic(header, out var user, out var password))
        {
            if (header is not null) ctx.Metrics.AuthFailure(ctx.Name);
            return new AuthResult(null, header is not null, "credentials required");
        }
        var login = await ctx.Runtime.Identity.LoginAsync(user, password, client, ct).ConfigureAwait(false);
        if (login == LoginResult.Ok) return new AuthResult(user, true, null);
        ctx.Metrics.AuthFailure(ctx.Name);
        return login == LoginResult.Throttled
            ? new AuthResult(null, true, "too many failed logins from this address: try again later", user, Throttled: true)
            : new AuthResult(null, true, "bad credentials", user);
    }
}

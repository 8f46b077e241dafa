namespace Bastion.Gateway;

/// <summary>
/// Names logged as the `rule` of decisions the gateway makes itself rather than a policy rule: protocol errors,
/// authentication, limits. One list, so that logs, metrics labels and dashboards agree on them.
/// </summary>
public static class PseudoRules
{
    /// <summary>Malformed or unsupported protocol input.</summary>
    public const string Protocol = "protocol";
    /// <summary>A request target backends may read differently (`%2F`, `//`...), refused by `ambiguous_paths: refuse`.</summary>
    public const string AmbiguousPaths = "protocol.ambiguous_paths";
    /// <summary>Several lines of a header a rule judges, with different values, refused by `conflicting_headers: refuse`.</summary>
    public const string ConflictingHeaders = "protocol.conflicting_headers";
    /// <summary>Missing or wrong credentials.</summary>
    public const string Authenticate = "authenticate";
    /// <summary>A trusted front did not open with a valid PROXY protocol header.</summary>
    public const string AcceptProxyProtocol = "accept_proxy_protocol";
    public const string MaxConnections = "limits.max_connections";
    public const string HeaderTimeout = "limits.header_timeout";
    public const string MaxRequestBody = "limits.max_request_body";
    public const string Rate = "limits.rate";
    /// <summary>A bug or unexpected failure inside the gateway.</summary>
    public const string Error = "error";
}

/// <summary>What an <see cref="Exchange"/> is: the `event` field of its log line.</summary>
public static class ExchangeKinds
{
    /// <summary>A decision on one request or command.</summary>
    public const string Request = "request";
    /// <summary>A client connection that ended (or was refused).</summary>
    public const string Connection = "connection";
    /// <summary>A data transfer (FTP data channel; an upgraded HTTP connection's tunnel, when it closes).</summary>
    public const string Transfer = "transfer";
}

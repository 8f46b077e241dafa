namespace Bastion.Protocols.Smtp;

public enum SmtpVerb : byte
{
    Unknown, Helo, Ehlo, Mail, Rcpt, Data, Bdat, Rset, Noop, Quit, Vrfy, Expn, Help, StartTls, Auth,
}

/// <summary>BODY= of MAIL FROM (RFC 6152); BINARYMIME is not offered.</summary>
public enum MailBody : byte { None, SevenBit, EightBitMime }

/// <summary>One parsed command line. Only the fields of its verb are set.</summary>
public sealed class SmtpCommand
{
    public SmtpVerb Verb;
    /// <summary>HELO/EHLO domain (lowercased, punycode), or the raw argument of VRFY/EXPN/HELP/NOOP/AUTH.</summary>
    public string? Argument;
    public MailPath? Path;
    /// <summary>SIZE= declared by MAIL FROM; -1 when absent.</summary>
    public long DeclaredSize = -1;
    public MailBody Body;
    public bool SmtpUtf8;
    /// <summary>BDAT chunk size and whether it is the last.</summary>
    public long ChunkSize;
    public bool Last;

    public void Reset()
    {
        Verb = SmtpVerb.Unknown;
        Argument = null;
        Path = null;
        DeclaredSize = -1;
        Body = MailBody.None;
        SmtpUtf8 = false;
        ChunkSize = 0;
        Last = false;
    }

    /// <summary>The verb as it appears in logs and in `command` rules.</summary>
    public static string Name(SmtpVerb v) => v switch
    {
        SmtpVerb.Helo => "HELO",
        SmtpVerb.Ehlo => "EHLO",
        SmtpVerb.Mail => "MAIL",
        SmtpVerb.Rcpt => "RCPT",
        SmtpVerb.Data => "DATA",
        SmtpVerb.Bdat => "BDAT",
        SmtpVerb.Rset => "RSET",
        SmtpVerb.Noop => "NOOP",
        SmtpVerb.Quit => "QUIT",
        SmtpVerb.Vrfy => "VRFY",
        SmtpVerb.Expn => "EXPN",
        SmtpVerb.Help => "HELP",
        SmtpVerb.StartTls => "STARTTLS",
        SmtpVerb.Auth => "AUTH",
        _ => "?",
    };
}

/// <summary>A parse failure: the reply code to send (500, 501, 504, 553, 555) and a short reason.</summary>
public readonly record struct CommandError(int Code, string Enhanced, string Reason)
{
    public bool IsError => Code != 0;
    public static readonly CommandError None = default;
}

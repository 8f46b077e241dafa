using Bastion.Policy;

namespace Bastion.Protocols.Smtp;

/// <summary>
/// What the SMTP gateway tells the policy at its three moments (SPEC 2.1), used by the live session and by
/// `bastion explain` alike. Each moment carries the transaction so far: MAIL its sender (and a declared SIZE=),
/// RCPT the sender and this recipient, the message at end of data every accepted recipient and the real size.
/// </summary>
public static class SmtpAttributes
{
    public static void ForMail(RequestAttributes a, MailPath from, long declaredSize)
    {
        a.ResetRequest();
        a.Command = "MAIL";
        a.MailFrom = from.Address;
        a.RcptTo = null;
        a.Size = declaredSize;
    }

    public static void ForRcpt(RequestAttributes a, MailPath? from, MailPath rcpt, long declaredSize)
    {
        a.ResetRequest();
        a.Command = "RCPT";
        a.MailFrom = from?.Address;
        a.RcptTo = [rcpt.Address];
        a.Size = declaredSize;
    }

    public static void ForMessage(RequestAttributes a, MailPath from, IReadOnlyList<string> recipients, long size)
    {
        a.ResetRequest();
        a.Command = "DATA";
        a.MailFrom = from.Address;
        a.RcptTo = recipients;
        a.Size = size;
    }
}
